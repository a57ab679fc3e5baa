"""``gossamer.gc_pacing``: survivors of a generation-1 collection leave the full scans,
and a full pass still reclaims a cycle among them.

The collector is the process's own, so each test puts it back as it found it (nothing
frozen, the pacing callback removed).
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Iterator
from typing import Any

import pytest

from gossamer import gc_pacing

LIVE = 300_000  # tracked objects of a "state" that outlives the collections


@pytest.fixture
def paced() -> Iterator[None]:
    gc.collect()
    gc.callbacks.append(gc_pacing._promote)
    try:
        yield
    finally:
        gc.callbacks.remove(gc_pacing._promote)
        gc.unfreeze()
        gc.collect()


def full_collection_cpu() -> float:
    started = time.thread_time()
    gc.collect(2)
    return time.thread_time() - started


class Cycle:
    def __init__(self) -> None:
        self.me: Any = self


def test_a_full_collection_no_longer_scans_what_survived_two(paced: None) -> None:
    gc.callbacks.remove(gc_pacing._promote)
    state = [[i] for i in range(LIVE)]  # lists: always tracked by the collector
    unpaced = min(full_collection_cpu() for _ in range(3))
    gc.callbacks.append(gc_pacing._promote)
    frozen = gc.get_freeze_count()
    gc.collect(1)
    assert gc.get_freeze_count() >= frozen + LIVE
    paced_cost = min(full_collection_cpu() for _ in range(3))
    assert paced_cost < unpaced / 5, (paced_cost, unpaced)
    assert len(state) == LIVE


def test_a_cycle_among_promoted_objects_waits_for_the_full_pass(paced: None) -> None:
    cycle = Cycle()
    gc.collect(1)  # promoted, with everything else alive
    del cycle
    gc.collect(2)
    assert _cycles_left() == 1  # out of reach of the collector...
    assert gc_pacing.full_pass() >= 1  # ...until the full pass
    assert _cycles_left() == 0


def _cycles_left() -> int:
    gc.unfreeze()
    try:
        return sum(1 for o in gc.get_objects() if type(o) is Cycle)
    finally:
        gc.freeze()


def test_pace_stops_promoting_when_cancelled() -> None:
    async def run() -> None:
        task = asyncio.create_task(gc_pacing.pace(full_every=3600))
        await asyncio.sleep(0)
        assert gc_pacing._promote in gc.callbacks
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert gc_pacing._promote not in gc.callbacks

    asyncio.run(run())
