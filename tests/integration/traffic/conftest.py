"""The traffic tests' lab: one zone per test module, a zone CP in-process with real Envoy
sidecars and real HTTP and TCP backends (``tests.dataplane_env``): ``web-1`` (service
``web``, tag ``team: frontend``) calls ``backend`` (``backend-1`` v1 and ``backend-2`` v2,
HTTP) and ``echo`` (``echo-1`` v1 and ``echo-2`` v2, TCP) through explicit outbounds.
``fresh_apps`` (autouse, for these tests only) resets the apps' counters before each test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.dataplane_apps import EchoApp, HttpApp, listen_port
from tests.dataplane_env import DataplaneEnv, Member
from tests.integration.traffic.policies import Lab


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def lab(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Lab]:
    directory = tmp_path_factory.mktemp("policies")
    apps = {name: HttpApp(name).start() for name in ("backend-1", "backend-2", "web-1")}
    echoes = [EchoApp(name).start() for name in ("echo-1", "echo-2")]
    backend, echo_port = listen_port(), listen_port()
    try:
        async with DataplaneEnv(directory) as env:
            web, *_ = await env.start(
                Member("web-1", "web", apps["web-1"].port, tags={"team": "frontend"},
                       outbounds={"backend": backend, "echo": echo_port}),
                Member("backend-1", "backend", apps["backend-1"].port, tags={"version": "v1"}),
                Member("backend-2", "backend", apps["backend-2"].port, tags={"version": "v2"}),
                Member("echo-1", "echo", echoes[0].port, "tcp", tags={"version": "v1"}),
                Member("echo-2", "echo", echoes[1].port, "tcp", tags={"version": "v2"}))
            yield Lab(env, web, apps, backend, echo_port, directory)
    finally:
        for app in [*apps.values(), *echoes]:
            app.stop()


@pytest.fixture(autouse=True)
def fresh_apps(lab: Lab) -> None:
    for app in lab.apps.values():
        app.reset()

