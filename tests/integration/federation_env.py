"""What the federation fault tests share: a global and two zones over real gRPC with TLS
(``Planes``), short heartbeats (every ``BEAT`` seconds, dead after ``DEAD_AFTER``) so that
the bounds the tests measure are those of the protocol, not of a test's patience, and
reads of what each side holds and has sent. The fixtures (``planes``, ``recorder``,
``spans``) are in ``tests/integration/conftest.py``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from global_cp.app import GlobalControlPlane
from gossamer.errors import NotFound
from gossamer.model.base import Resource
from tests.cluster import start_global, start_zone
from zone_cp.app import ZoneControlPlane
from zone_cp.sync_client import Redial

BEAT, DEAD_AFTER = 0.2, 1.0


# Zones redial a global that is down at most every second (30 s in production), so a
# test waits for convergence, not for a long backoff.
QUICK_REDIAL = Redial(initial=0.2, maximum=1.0)


TIMEOUT_URL = "gossamer.io/MeshTimeout"


def timeout_policy(name: str, seconds: int = 5) -> dict[str, Any]:
    return {"type": "MeshTimeout", "name": name, "mesh": "default",
            "spec": {"to": [{"targetRef": {"kind": "MeshService", "name": "backend"},
                             "default": {"http": {"requestTimeout": f"{seconds}s"}}}]}}


class Planes:
    """The control planes a test starts; whatever is still running is stopped at the end."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.running: list[GlobalControlPlane | ZoneControlPlane] = []

    async def global_cp(self, store: str = "sqlite", api_port: int = 0,
                        sync_port: int = 0) -> GlobalControlPlane:
        cp = await start_global(self.root / "global", store, BEAT, DEAD_AFTER,
                                api_addr=f"127.0.0.1:{api_port}",
                                sync_addr=f"127.0.0.1:{sync_port}")
        self.running.append(cp)
        return cp

    async def zone(self, global_cp: GlobalControlPlane | None, name: str,
                   **kwargs: Any) -> ZoneControlPlane:
        cp = await start_zone(global_cp, name, self.root / f"zone-{name}", heartbeat=BEAT,
                              timeout=DEAD_AFTER, **kwargs)
        cp.sync.redial = QUICK_REDIAL
        self.running.append(cp)
        return cp

    async def stop(self, cp: GlobalControlPlane | ZoneControlPlane) -> None:
        self.running.remove(cp)
        await stop_or_show(cp)


async def stop_or_show(cp: GlobalControlPlane | ZoneControlPlane, within: float = 15) -> None:
    """Stop ``cp``; if that hangs, fail with the stacks of the tasks still running."""
    stopping = asyncio.create_task(cp.stop(), name=f"stopping {type(cp).__name__}")
    done, _ = await asyncio.wait([stopping], timeout=within)
    if done:
        return stopping.result()
    stacks = [f"--- {task!r}\n" + "".join(f"  {line}\n" for line in _awaiting(task.get_coro()))
              for task in asyncio.all_tasks()]
    stopping.cancel()
    pytest.fail(f"{type(cp).__name__}.stop() still running after {within}s:\n"
                + "".join(stacks))


def _awaiting(coro: Any) -> list[str]:
    """Where a suspended coroutine is, down its chain of awaits."""
    lines = []
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None)
        if frame is not None:
            lines.append(f"{frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None)
    return lines


def ports(cp: GlobalControlPlane) -> tuple[int, int]:
    assert cp.sync is not None
    return cp.bound_api_addr[1], cp.sync.port


async def get(cp: GlobalControlPlane | ZoneControlPlane, kind: str, name: str,
              mesh: str = "") -> Resource | None:
    assert cp.store is not None
    try:
        return await cp.store.get(kind, name, mesh)
    except NotFound:
        return None


async def timeout_of(cp: ZoneControlPlane, name: str) -> str | None:
    res = await get(cp, "MeshTimeout", name, "default")
    if res is None:
        return None
    return str(res.spec_dict()["to"][0]["default"]["http"]["requestTimeout"])


async def converged(zones: list[ZoneControlPlane], expect: dict[str, str | None]) -> bool:
    """Every zone holds exactly these MeshTimeouts (name -> timeout, None: absent)."""
    for zone in zones:
        for name, value in expect.items():
            if await timeout_of(zone, name) != value:
                return False
    return True


def online(cp: GlobalControlPlane, zone: str) -> bool:
    return cp.insights.get(zone).streams == 2

