"""A sidecar follows its token file (DESIGN §5: a live session ends with its token): the
real zone CP in-process, two real agents (``web`` calling ``backend``) and their Envoys.

* A token about to expire is replaced in the file: the agent reads the file on its own
  before the expiry, hands its Session over and hot restarts Envoy with the new token, so
  a loop of requests through web's Envoy sees no failure across the old token's expiry,
  and a route applied after it still reaches web's Envoy (its ADS stream is the new
  token's: the old one is expired and the CP admits no stream with it).
* A revoked token (the CP ends the Session and the ADS stream, and removes the
  Dataplane) is replaced in the file: the agent registers again with it at its next try,
  without a restart, and Envoy follows.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from authority.token_authority import TokenAuthority
from gossamer.errors import NotFound
from gossamer.model.registry import parse_document
from gossamer.tokens import DATAPLANE
from tests.integration.agent_env import AgentProcess, envoy_pids, free_port
from tests.integration.test_agent_zone import Zone, get, http_backend, sidecar
from tests.waiting import eventually

NODE = "dp:default:web-1"
MOVED = {  # web's own Envoy answers /moved once it has this route
    "type": "MeshHTTPRoute", "name": "moved", "mesh": "default",
    "spec": {"targetRef": {"kind": "MeshService", "name": "web"},
             "to": [{"targetRef": {"kind": "MeshService", "name": "backend"}, "rules": [{
                 "matches": [{"path": {"type": "PathPrefix", "value": "/moved"}}],
                 "default": {"filters": [{"type": "RequestRedirect",
                                          "requestRedirect": {"statusCode": 301}}]}}]}]},
}


@pytest.fixture
async def zone(tmp_path: Path) -> AsyncIterator[Zone]:
    z = Zone(tmp_path / "zone", free_port())
    await z.start()
    yield z
    await z.stop()


@dataclass
class Mesh:
    zone: Zone
    web: AgentProcess
    outbound: int
    token_file: Path


@contextlib.asynccontextmanager
async def web_and_backend(tmp_path: Path, zone: Zone) -> AsyncIterator[Mesh]:
    outbound = free_port()
    async with http_backend(b"hello from backend") as backend_port, \
            await sidecar(tmp_path / "backend", zone, "backend-1", "backend", backend_port), \
            await sidecar(tmp_path / "web", zone, "web-1", "web", free_port(),
                          outbound) as web:
        await eventually(lambda: _answers(outbound), timeout=60,
                         what="web -> backend through both sidecars")
        yield Mesh(zone, web, outbound, tmp_path / "web" / "token")
        web.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(web.proc.wait(), 15) == 0, web.errors()
        assert "Traceback" not in web.errors()


async def _answers(port: int, path: str = "/", status: int = 200) -> bool:
    return (await get_path(port, path)).status_code == status


async def get_path(port: int, path: str) -> httpx.Response:
    if path == "/":
        return await get(port)
    async with httpx.AsyncClient(timeout=2.0) as client:
        return await client.get(f"http://127.0.0.1:{port}{path}")


@dataclass
class Load:
    """Requests through web's Envoy, one new connection each, until stopped."""

    port: int
    ok: int = 0
    failures: list[str] = field(default_factory=list)

    async def run(self) -> None:
        while True:
            try:
                response = await get(self.port)
                if response.status_code == 200 and response.text == "hello from backend":
                    self.ok += 1
                else:
                    self.failures.append(f"HTTP {response.status_code}: {response.text!r}")
            except httpx.HTTPError as exc:
                self.failures.append(repr(exc))
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def load(port: int) -> AsyncIterator[Load]:
    running = Load(port)
    task = asyncio.create_task(running.run())
    try:
        yield running
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def issue(zone: Zone, valid_for: float) -> tuple[str, str, int]:
    """A dataplane token for web: the token, its id and its expiry (epoch seconds)."""
    assert zone.cp is not None
    token, claims = await TokenAuthority(zone.cp.manager, DATAPLANE, "default").issue(
        "web", valid_for)
    return token, claims.token_id, claims.expires_at


def session_token(zone: Zone) -> str | None:
    """The id of the token web's live session holds (None: no session)."""
    assert zone.cp is not None
    session = zone.cp.agents.sessions.get(NODE)
    return session.claims.token_id if session is not None else None


async def registered(zone: Zone) -> bool:
    assert zone.cp is not None
    try:
        await zone.cp.manager.get("Dataplane", "web-1", "default")
    except NotFound:
        return False
    return True


async def unregistered(zone: Zone) -> bool:
    return not await registered(zone)


async def test_a_token_replaced_before_it_expires_drops_no_request(
        tmp_path: Path, zone: Zone) -> None:
    async with web_and_backend(tmp_path, zone) as mesh, load(mesh.outbound) as traffic:
        first_envoys = set(envoy_pids(mesh.web.work))
        # SIGHUP: web moves to a token that expires in 10 s.
        short, short_id, short_exp = await issue(zone, 10)
        mesh.token_file.write_text(short + "\n")
        mesh.web.proc.send_signal(signal.SIGHUP)
        await eventually(lambda: session_token(zone) == short_id, timeout=10,
                         what="web's session to hold the short token")
        await eventually(lambda: set(envoy_pids(mesh.web.work)) - first_envoys, timeout=10,
                         what="Envoy to be hot restarted with the short token")

        # A long token is written, no signal: the agent reads the file before the expiry.
        long, long_id, _ = await issue(zone, 3600)
        mesh.token_file.write_text(long)
        await eventually(lambda: session_token(zone) == long_id, timeout=12,
                         what="web's session to move to the long token on its own")
        assert time.time() < short_exp, "picked up only after the short token expired"
        await eventually(lambda: time.time() > short_exp + 1, timeout=15,
                         what="the short token's expiry")

        assert session_token(zone) == long_id and await registered(zone)
        assert zone.cp is not None
        await zone.cp.manager.apply(parse_document(MOVED))
        await eventually(lambda: _answers(mesh.outbound, "/moved/x", 301), timeout=20,
                         what="a route applied after the expiry to reach web's Envoy")
        # (Not ``insights[NODE].connected``: the CP keeps one flag per node, and the
        # draining parent's stream, ended at the old token's expiry, clears it.)
        assert traffic.failures == [], traffic.failures[:5]
        assert traffic.ok > 50
    assert "Envoy hot restarted" in mesh.web.errors()


async def test_a_revoked_token_replaced_in_the_file_recovers_without_a_restart(
        tmp_path: Path, zone: Zone) -> None:
    async with web_and_backend(tmp_path, zone) as mesh, load(mesh.outbound) as traffic:
        assert zone.cp is not None
        revoked = session_token(zone)
        assert revoked is not None
        await TokenAuthority(zone.cp.manager, DATAPLANE, "default").revoke(revoked)
        await eventually(lambda: session_token(zone) is None, timeout=10,
                         what="the revocation to end web's session")
        await eventually(lambda: unregistered(zone), timeout=10,
                         what="web's Dataplane to be removed")

        fresh, fresh_id, _ = await issue(zone, 3600)
        mesh.token_file.write_text(fresh)
        await eventually(lambda: session_token(zone) == fresh_id, timeout=30,
                         what="web to register again with the new token")
        assert await registered(zone)
        await zone.cp.manager.apply(parse_document(MOVED))
        await eventually(lambda: _answers(mesh.outbound, "/moved/x", 301), timeout=20,
                         what="a route to reach web's Envoy over its new ADS stream")
        # Envoy kept serving its last configuration all along, and serves on.
        served = traffic.ok
        await eventually(lambda: traffic.ok > served + 10, timeout=10,
                         what="more requests through the restarted Envoy")
        assert traffic.failures == [], traffic.failures[:5]
    assert mesh.web.proc.returncode == 0

