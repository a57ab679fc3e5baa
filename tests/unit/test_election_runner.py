"""The election's asyncio shell on local leases: the work runs on one process at a time.

Two ``Election``s share one ``LocalLeases`` (what the memory and SQLite stores use) on a
short lease; their work records when it ran, so the test checks that the terms never
overlap, that a stopped leader's work is cancelled before ``run`` returns, and that work
which fails gives the lease to the other.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from gossamer.election.core import Timing
from gossamer.election.leases import LocalLeases, NotLeader
from gossamer.election.runner import Election
from gossamer.model.base import Resource
from gossamer.model.mesh import MeshSpec
from gossamer.store.memory import MemoryStore
from tests.waiting import eventually

TIMING = Timing.for_ttl(0.5)


class Recorder:
    """Work that runs until cancelled, recording its term as (start, end)."""

    def __init__(self, fail: bool = False) -> None:
        self.terms: list[tuple[float, float]] = []
        self.running = False
        self.fail = fail

    async def work(self) -> None:
        start = time.monotonic()
        self.running = True
        try:
            if self.fail:
                raise RuntimeError("the work broke")
            await asyncio.Event().wait()
        finally:
            self.running = False
            self.terms.append((start, time.monotonic()))


def overlapping(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> bool:
    return any(s1 < e2 and s2 < e1 for s1, e1 in a for s2, e2 in b)


async def test_one_leader_then_the_other_when_the_first_stops() -> None:
    leases = LocalLeases()
    ra, rb = Recorder(), Recorder()
    a = Election(leases, "global", ra.work, timing=TIMING, holder="a")
    b = Election(leases, "global", rb.work, timing=TIMING, holder="b")
    ta = asyncio.create_task(a.run())
    await eventually(lambda: a.is_leader and ra.running, 5, "a leads")
    tb = asyncio.create_task(b.run())
    await eventually(lambda: b.leader == "a", 5, "b sees a lead")
    assert not b.is_leader and not rb.running
    ta.cancel()
    await asyncio.gather(ta, return_exceptions=True)
    assert not ra.running  # stopped before run() returned
    await eventually(lambda: b.is_leader and rb.running, 5, "b takes over")
    tb.cancel()
    await asyncio.gather(tb, return_exceptions=True)
    assert not overlapping(ra.terms, rb.terms)


async def test_work_that_fails_gives_the_lease_up() -> None:
    leases = LocalLeases()
    broken, healthy = Recorder(fail=True), Recorder()
    a = Election(leases, "global", broken.work, timing=TIMING, holder="a")
    ta = asyncio.create_task(a.run())
    await eventually(lambda: broken.terms, 5, "a's work to run and fail")
    b = Election(leases, "global", healthy.work, timing=TIMING, holder="b")
    tb = asyncio.create_task(b.run())
    await eventually(lambda: b.is_leader and healthy.running, 5, "b leads")
    for task in (ta, tb):
        task.cancel()
    await asyncio.gather(ta, tb, return_exceptions=True)


async def test_only_the_leaders_fenced_writes_land() -> None:
    leases, store = LocalLeases(), MemoryStore()
    a = Election(leases, "global", Recorder().work, timing=TIMING, holder="a")
    b = Election(leases, "global", Recorder().work, timing=TIMING, holder="b")
    tasks = [asyncio.create_task(a.run()), asyncio.create_task(b.run())]
    leader, follower = await eventually(
        lambda: (a, b) if a.is_leader else (b, a) if b.is_leader else None, 5, "a leader")
    mesh = Resource(type="Mesh", name="m", spec=MeshSpec())
    await leader.fenced(store).create(mesh)
    with pytest.raises(NotLeader, match="not the leader"):
        await follower.fenced(store).delete("Mesh", "m")
    assert (await store.get("Mesh", "m")).name == "m"
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
