"""The agent against the real zone control plane: two sidecars (``web`` calling ``backend``
through an explicit outbound) with real Envoys, mTLS between them, a tiny HTTP backend,
the zone CP in-process (standalone, SQLite), the agents as real ``gossamer proxy run``
processes. Also: the sidecars keep serving while the zone CP is down, their Dataplanes stay
stored across its restart, and they pick up changes when it returns; a token for another
service is refused with the CP's reason."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from authority.token_authority import TokenAuthority
from gossamer.model.registry import parse_document
from gossamer.settings import ZoneSettings
from gossamer.tokens import DATAPLANE
from tests.integration.agent_env import (
    AgentProcess,
    agent_process,
    envoy_pids,
    free_port,
)
from tests.waiting import eventually
from zone_cp.app import ZoneControlPlane

DATAPLANE_YAML = """\
type: Dataplane
mesh: default
name: {{ name }}
networking:
  address: 127.0.0.1
  inbound:
  - port: {{ inbound }}
    servicePort: {{ app }}
    tags: {gossamer.io/service: {{ service }}, gossamer.io/protocol: http}
"""
OUTBOUND = """\
  outbound:
  - port: {{ outbound }}
    tags: {gossamer.io/service: backend}
"""
DENY_WEB = {
    "type": "MeshTrafficPermission", "name": "deny-web", "mesh": "default",
    "spec": {"targetRef": {"kind": "MeshService", "name": "backend"},
             "from": [{"targetRef": {"kind": "MeshService", "name": "web"},
                       "default": {"action": "Deny"}}]},
}


@dataclass
class Zone:
    directory: Path
    xds_port: int
    cp: ZoneControlPlane | None = None

    async def start(self) -> ZoneControlPlane:
        self.cp = ZoneControlPlane(ZoneSettings(
            zone="lab", data_dir=self.directory, api_addr="127.0.0.1:0",
            xds_addr=f"127.0.0.1:{self.xds_port}", store="sqlite"))
        await self.cp.start()
        return self.cp

    async def stop(self) -> None:
        if self.cp is not None:
            await self.cp.stop()
            self.cp = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.xds_port}"

    @property
    def ca(self) -> Path:
        return self.directory / "tls" / "ca.pem"

    async def token(self, service: str, path: Path) -> Path:
        assert self.cp is not None
        token, _ = await TokenAuthority(self.cp.manager, DATAPLANE, "default").issue(
            service, 3600)
        path.write_text(token)
        return path


@pytest.fixture
async def zone(tmp_path: Path) -> AsyncIterator[Zone]:
    z = Zone(tmp_path / "zone", free_port())
    await z.start()
    yield z
    await z.stop()


@contextlib.asynccontextmanager
async def http_backend(body: bytes) -> AsyncIterator[int]:
    """An HTTP/1.1 server that answers every request with ``body``."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if not head:
                    break
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s"
                             % (len(body), body))
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def sidecar(directory: Path, zone: Zone, name: str, service: str, app_port: int,
                  outbound: int | None = None, token_service: str | None = None
                  ) -> contextlib.AbstractAsyncContextManager[AgentProcess]:
    directory.mkdir(parents=True)
    dp = directory / "dataplane.yaml"
    dp.write_text(DATAPLANE_YAML + (OUTBOUND if outbound else ""))
    token = await zone.token(token_service or service, directory / "token")
    args = ["--dataplane", str(dp), "--dataplane-var", f"name={name}",
            "--dataplane-var", f"service={service}",
            "--dataplane-var", f"inbound={free_port()}", "--dataplane-var", f"app={app_port}",
            "--cp", zone.url, "--token-file", str(token), "--cp-ca", str(zone.ca),
            "--admin-port", str(free_port()), "--drain-time", "1s"]
    if outbound:
        args += ["--dataplane-var", f"outbound={outbound}"]
    return agent_process(directory, args)


async def get(port: int) -> httpx.Response:
    async with httpx.AsyncClient(timeout=2.0) as client:
        return await client.get(f"http://127.0.0.1:{port}/")


async def test_two_sidecars_talk_over_mtls_and_survive_a_control_plane_outage(
        tmp_path: Path, zone: Zone) -> None:
    outbound = free_port()
    async with http_backend(b"hello from backend") as backend_port, \
            await sidecar(tmp_path / "backend", zone, "backend-1", "backend",
                          backend_port) as backend, \
            await sidecar(tmp_path / "web", zone, "web-1", "web", free_port(),
                          outbound) as web:

        async def through_the_mesh() -> bool:
            response = await get(outbound)
            return response.status_code == 200 and response.text == "hello from backend"

        await eventually(through_the_mesh, timeout=60,
                         what="web -> backend through both sidecars")
        pids = envoy_pids(backend.work) + envoy_pids(web.work)
        assert zone.cp is not None
        insight = zone.cp.ads.insights["dp:default:backend-1"]
        assert insight.acked > 0 and insight.nacked == 0, insight.last_nack
        nodes = ("dp:default:backend-1", "dp:default:web-1")
        serials = await eventually(lambda: reported_serials(zone, nodes), timeout=30,
                                   what="both agents to report their certificates")

        # The control plane goes away: traffic keeps flowing on the last configuration.
        await zone.stop()
        for _ in range(20):
            assert await through_the_mesh()
        assert envoy_pids(backend.work) + envoy_pids(web.work) == pids

        # It comes back: its stop deleted neither Dataplane (the sidecars kept running), the
        # agents register again and a new policy reaches the Envoys.
        cp = await zone.start()
        assert {"backend-1", "web-1"} <= {r.name for r in (
            await cp.manager.list("Dataplane", "default")).items}
        await eventually(lambda: {"dp:default:backend-1", "dp:default:web-1"}
                         <= set(cp.agents.sessions), timeout=60,
                         what="both agents registered again")
        # The new CP signed nothing for them: it knows their certificates because each
        # agent reports its status again when it registers again.
        assert await eventually(lambda: reported_serials(zone, nodes), timeout=10,
                                what="both agents to report again") == serials
        await cp.manager.apply(parse_document(DENY_WEB))
        await eventually(lambda: _status(outbound, 403), timeout=30,
                         what="the deny to reach backend's sidecar")
        assert envoy_pids(backend.work) + envoy_pids(web.work) == pids

        for agent in (web, backend):
            agent.proc.send_signal(signal.SIGTERM)
        for agent in (web, backend):
            assert await asyncio.wait_for(agent.proc.wait(), 15) == 0, agent.errors()
            assert "Traceback" not in agent.errors()


def reported_serials(zone: Zone, nodes: tuple[str, ...]) -> dict[str, str] | None:
    """The serial each node reported to the zone CP, or None until all have."""
    assert zone.cp is not None
    sessions = zone.cp.agents.sessions
    certs = {n: sessions[n].certificate if n in sessions else None for n in nodes}
    return {n: c.serial for n, c in certs.items() if c} if all(certs.values()) else None


async def _status(port: int, status: int) -> bool:
    return (await get(port)).status_code == status


async def test_a_token_for_another_service_is_refused(tmp_path: Path, zone: Zone) -> None:
    async with await sidecar(tmp_path / "backend", zone, "backend-1", "backend", free_port(),
                             token_service="web") as agent:
        assert await asyncio.wait_for(agent.proc.wait(), 30) == 1
    errors = [line for line in agent.errors().splitlines() if line.startswith("error:")]
    assert len(errors) == 1, agent.errors()
    assert "refused" in errors[0] and "PERMISSION_DENIED" in errors[0]
    assert "web" in errors[0]
    assert "Traceback" not in agent.errors()
