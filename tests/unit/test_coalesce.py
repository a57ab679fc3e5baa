"""gossamer.coalesce: once per loop turn, and again when asked while running."""

from __future__ import annotations

import asyncio

from gossamer.coalesce import Coalesced


async def turn() -> None:
    """Let the callbacks scheduled so far run."""
    await asyncio.sleep(0)


async def test_many_calls_in_one_turn_run_once() -> None:
    runs: list[int] = []
    work = Coalesced(lambda: runs.append(len(runs)))
    for change in ("a", None, "b"):
        work(change)
    assert runs == [] and work.scheduled
    await turn()
    assert runs == [0] and not work.scheduled
    await turn()
    assert runs == [0]


async def test_a_call_while_running_runs_again() -> None:
    runs: list[int] = []

    def fn() -> None:
        runs.append(len(runs))
        if len(runs) == 1:
            work()  # a change made by the work itself is not lost

    work = Coalesced(fn)
    work()
    await turn()
    assert runs == [0]
    await turn()
    assert runs == [0, 1]


async def test_cancel_drops_the_scheduled_run() -> None:
    runs: list[int] = []
    work = Coalesced(lambda: runs.append(1))
    work()
    work.cancel()
    await turn()
    assert runs == [] and not work.scheduled
    work()
    await turn()
    assert runs == [1]


async def test_a_minimum_interval_spaces_the_runs() -> None:
    loop = asyncio.get_running_loop()
    starts: list[float] = []
    work = Coalesced(lambda: starts.append(loop.time()), min_interval=0.05)
    work()
    await turn()
    assert len(starts) == 1
    work()  # asked again at once: waits out the interval, then runs once
    work()
    await turn()
    assert len(starts) == 1 and work.scheduled
    deadline = loop.time() + 5
    while len(starts) < 2 and loop.time() < deadline:
        await asyncio.sleep(0.01)
    assert len(starts) == 2
    assert starts[1] - starts[0] >= 0.05
