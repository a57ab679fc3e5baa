"""A zone CP restart is not a data-plane outage for the other zones.

A global and two zones (``east``, ``west``) in-process over real gRPC with TLS; in east,
real sidecars (``gossamer proxy run``) and east's ingress (``gossamer ingress run``) with
real Envoys (the harness of ``tests/integration/ingress_env.py``; its ``cluster`` fixture is in
``tests/integration/conftest.py``).

- While east's CP stops, stays down and starts again, east's Dataplane and ZoneIngress
  stay visible at the global, and west keeps east's ingress offering backend, checked
  every 50 ms until the agents are registered again;
- a sidecar that died while the CP was down is removed after the grace
  (``ZoneSettings.agent_grace``), not at the start, and one that came back is kept;
- an agent stopped while the CP runs is removed at once, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from gossamer.errors import NotFound
from sync.applier import zone_scoped_name
from tests.integration.agent_env import envoy_pids
from tests.integration.ingress_env import (
    BACKEND,
    MESH,
    Cluster,
    _offers,
    free_port,
    ingress_at,
    ingress_process,
    offered,
    sidecar,
    synced_ingresses,
)
from tests.integration.test_agent_zone import http_backend
from tests.waiting import eventually
from zone_cp.app import ZoneControlPlane

GRACE = 8.0


async def restart_east(cluster: Cluster, grace: float,
                       while_down: Callable[[], Awaitable[None]] | None = None) -> float:
    """Stop east's CP, keep it down (running ``while_down``) until the global sees east
    offline, start it again on the same port and data with ``agent_grace=grace``; when it
    started (monotonic)."""
    async with cluster.down("east", agent_grace=grace):
        if while_down is not None:
            await while_down()
        await eventually(lambda: not cluster.global_cp.insights.get("east").online,
                         timeout=30, what="the global to see east offline")
    return time.monotonic()


async def west_has_east_ingress(cluster: Cluster, name: str) -> bool:
    """West holds east's ingress ``name`` as east last wrote it (what east sent has
    reached west through the global)."""
    own = await ingress_at(cluster.east, name)
    copies = await synced_ingresses(cluster.west, "east")
    return (own is not None and len(copies) == 1 and offered(copies[0]) == offered(own)
            and own.meta.modification_time is not None
            and copies[0].meta.modification_time is not None
            and copies[0].meta.modification_time >= own.meta.modification_time)


async def dataplane_at(cp: ZoneControlPlane, name: str) -> bool:
    store = cp.store
    assert store is not None
    try:
        await store.get("Dataplane", name, MESH)
    except NotFound:
        return False
    return True


async def at_global(cluster: Cluster, kind: str, name: str, mesh: str = MESH) -> bool:
    assert cluster.global_cp.store is not None
    try:
        await cluster.global_cp.store.get(kind, zone_scoped_name("east", mesh, name), mesh)
    except NotFound:
        return False
    return True


@contextlib.asynccontextmanager
async def watching(check: Callable[[], Awaitable[str | None]]) -> AsyncIterator[list[str]]:
    """Run ``check`` every 50 ms in the background; what it reported wrong, each time."""
    lapses: list[str] = []
    checks = 0

    async def loop() -> None:
        nonlocal checks
        while True:
            if (wrong := await check()) is not None:
                lapses.append(wrong)
            checks += 1
            await asyncio.sleep(0.05)

    task = asyncio.create_task(loop())
    try:
        yield lapses
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert checks > 20, f"only {checks} checks ran"


async def test_a_zone_cp_restart_keeps_its_routes_at_the_global_and_in_west(
        cluster: Cluster) -> None:
    token = await cluster.zone_token("east", ["ingress"], cluster.directory / "east.token")
    west = cluster.west
    async with http_backend(b"hello from east") as app, \
            await sidecar(cluster, cluster.east, "backend-1", "backend", app) as backend, \
            ingress_process(cluster.directory / "ingress", cluster.east, token, free_port()):
        await eventually(lambda: _west_sees_backend(west), timeout=90,
                         what="east's ingress offering backend in west")
        await eventually(lambda: at_global(cluster, "Dataplane", "backend-1"), timeout=30,
                         what="backend-1 at the global")

        async def routes() -> str | None:
            if not await at_global(cluster, "Dataplane", "backend-1"):
                return "backend-1 gone from the global"
            if not await at_global(cluster, "ZoneIngress", "east-ingress", ""):
                return "east-ingress gone from the global"
            if not await _west_sees_backend(west):
                return f"west sees {[offered(r) for r in await synced_ingresses(west, 'east')]}"
            return None

        async with watching(routes) as lapses:
            await restart_east(cluster, grace=60.0)
            east = cluster.east
            await eventually(lambda: "dp:default:backend-1" in east.agents.sessions
                             and "ingress:east-ingress" in east.ingresses.sessions,
                             timeout=90, what="both agents registered again")
            await eventually(lambda: _offers(east, "east-ingress", [BACKEND]), timeout=30,
                             what="east's ingress stored again with backend")
            await eventually(lambda: west_has_east_ingress(cluster, "east-ingress"),
                             timeout=30, what="what the re-registration sent to reach west")
        assert lapses == [], lapses[:5]

        # An agent that stops while the CP runs is removed at once, not after the grace.
        backend.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(backend.proc.wait(), 15) == 0, backend.errors()
        await eventually(lambda: not_(dataplane_at(east, "backend-1")), timeout=10,
                         what="backend-1 removed from east")
        await eventually(lambda: not_(at_global(cluster, "Dataplane", "backend-1")),
                         timeout=15, what="backend-1 removed from the global")
        await eventually(lambda: _west_offers(west, []), timeout=15,
                         what="east's ingress offering nothing in west")


async def not_(check: Awaitable[bool]) -> bool:
    return not await check


async def _west_offers(west: ZoneControlPlane, expected: list[object]) -> bool:
    found = await synced_ingresses(west, "east")
    return len(found) == 1 and offered(found[0]) == expected


async def _west_sees_backend(west: ZoneControlPlane) -> bool:
    return await _west_offers(west, [BACKEND])


async def test_a_sidecar_that_does_not_come_back_is_removed_after_the_grace(
        cluster: Cluster) -> None:
    async with await sidecar(cluster, cluster.east, "backend-1", "backend",
                             free_port()) as lost, \
            await sidecar(cluster, cluster.east, "backend-2", "backend", free_port()):
        for name in ("backend-1", "backend-2"):
            await eventually(lambda n=name: at_global(cluster, "Dataplane", n), timeout=60,
                             what=f"{name} at the global")

        async def kill_lost() -> None:  # the sidecar dies with the CP: agent and Envoy
            lost.proc.kill()
            await lost.proc.wait()
            for pid in envoy_pids(lost.work):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

        started = await restart_east(cluster, grace=GRACE, while_down=kill_lost)
        east = cluster.east
        assert await dataplane_at(east, "backend-1") and await dataplane_at(east, "backend-2")
        await eventually(lambda: "dp:default:backend-2" in east.agents.sessions, timeout=60,
                         what="backend-2 registered again")
        assert "dp:default:backend-1" not in east.agents.sessions
        # Within the grace the lost one is still everywhere.
        remaining = started + GRACE * 0.6 - time.monotonic()
        if remaining > 0:
            await asyncio.sleep(remaining)
        assert await dataplane_at(east, "backend-1")
        assert await at_global(cluster, "Dataplane", "backend-1")

        await eventually(lambda: not_(dataplane_at(east, "backend-1")), timeout=GRACE + 10,
                         what="backend-1 removed after the grace")
        assert time.monotonic() - started >= GRACE * 0.9
        await eventually(lambda: not_(at_global(cluster, "Dataplane", "backend-1")),
                         timeout=15, what="backend-1 removed from the global")
        assert await dataplane_at(east, "backend-2")
        assert await at_global(cluster, "Dataplane", "backend-2")
