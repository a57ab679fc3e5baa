"""Config delivery under real traffic: a NACKed config leaves Envoy on its last good config,
and certificates rotate under load without a failed request (in a mesh of its own).

One zone per module (the ``lab`` fixture, ``conftest.py`` here): ``web-1`` (service ``web``,
tag ``team: frontend``) calls ``backend`` (``backend-1`` v1 and ``backend-2`` v2, HTTP) and
``echo`` (``echo-1`` v1 and ``echo-2`` v2, TCP) through explicit outbounds. Each test applies
its policies, waits until every Envoy uses the config that follows
(``DataplaneEnv.converged``), drives traffic, asserts on what the client and the backends
saw, and deletes its policies (waiting again), so the tests do not depend on each other.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.dataplane_apps import HttpApp, listen_port, request, requests, statuses
from tests.dataplane_env import Member, Sidecar
from tests.integration.traffic.policies import Lab, policy
from tests.waiting import eventually

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_a_nacked_config_leaves_envoy_on_its_last_good_config(lab: Lab) -> None:
    """A listener on a port that is taken is a config Envoy rejects: it cannot bind it."""

    async def web_xds() -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=5) as client:
            answer = await client.get(
                f"{lab.env.cp.api_url}/dataplanes/_overviews",
                headers={"authorization": f"Bearer {lab.env.cp.admin_token}"})
        [web] = [i for i in answer.json()["items"] if i["name"] == "web-1"]
        return dict(web["xds"])

    before = await web_xds()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        [metric] = await lab.env.apply(policy("MeshMetric", "on-a-taken-port", {
            "targetRef": {"kind": "MeshService", "name": "web"},
            "default": {"backends": [{"type": "Prometheus", "prometheus": {"port": port}}]}}),
            converge=False)

        async def nacked() -> dict[str, Any] | None:
            xds = await web_xds()
            return xds if xds["nacked"] > before["nacked"] else None

        xds = await eventually(nacked, timeout=20, what="the zone CP to report web-1's NACK")
        assert str(port) in xds["lastNack"], xds["lastNack"]
        listeners = (await lab.web.admin("/listeners")).text
        assert f":{port}" not in listeners
        assert statuses(await requests(lab.backend, count=5)) == {200: 5}
    await lab.env.delete(metric)
    assert statuses(await requests(lab.backend, count=5)) == {200: 5}


ROTATING = "rotating"


async def test_certificates_rotate_under_load_without_a_failed_request(lab: Lab) -> None:
    mesh = {"type": "Mesh", "name": ROTATING, "mtls": {
        "enabledBackend": "ca-1", "mode": "strict", "backends": [
            {"name": "ca-1", "type": "builtin", "dpCert": {"rotation": {"expiration": "6s"}}}]}}
    allow = policy("MeshTrafficPermission", "allow-all", {
        "targetRef": {"kind": "Mesh"},
        "from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}]},
        mesh=ROTATING)
    # The client sidecar opens a new connection to the server's every second, so the
    # load keeps shaking hands with whatever certificates the two hold at that moment.
    recycle = policy("MeshTimeout", "recycle", {"to": [{
        "targetRef": {"kind": "MeshService", "name": "server"},
        "default": {"http": {"maxConnectionDuration": "1s"}}}]}, mesh=ROTATING)
    app = HttpApp("server-1").start()
    outbound = listen_port()
    resources = await lab.env.apply(mesh, allow, recycle)
    try:
        async with lab.env.running(
                Member("client-1", "client", listen_port(), mesh=ROTATING,
                       outbounds={"server": outbound}),
                Member("server-1", "server", app.port, mesh=ROTATING)) as sidecars:
            report = await _load(outbound, sidecars, seconds=20)
    finally:
        app.stop()
        await lab.env.delete(*reversed(resources))
    assert report.failures == [], report.failures[:5]
    assert report.requests >= 200, report.requests
    for name, serials in report.serials.items():
        assert len(serials) >= 3, (name, serials)  # 6 s certificates, renewed at 4 s
    assert report.handshakes >= 10, report.handshakes


@dataclass
class LoadReport:
    requests: int
    failures: list[str]
    serials: dict[str, set[str]]
    handshakes: int


async def _load(port: int, sidecars: list[Sidecar], seconds: float) -> LoadReport:
    """Sequential requests for ``seconds``, noting the certificates each sidecar holds."""
    server = sidecars[-1]
    handshakes = "ssl\\.handshake$"
    before = sum((await server.stats(handshakes)).values())
    report = LoadReport(0, [], {s.name: set() for s in sidecars}, 0)
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(timeout=5) as client:
        while time.monotonic() < deadline:
            try:
                reply = await request(client, port, "/")
                if reply.status != 200:
                    report.failures.append(f"{reply.status} {reply.body}")
            except httpx.HTTPError as exc:
                report.failures.append(repr(exc))
            report.requests += 1
            if report.requests % 25 == 0:
                for sidecar in sidecars:
                    report.serials[sidecar.name] |= await sidecar.certificate_serials()
    report.handshakes = sum((await server.stats(handshakes)).values()) - before
    return report

