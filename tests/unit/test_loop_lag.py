"""gossamer.loop_lag: a loop blocked on purpose shows up in the histogram, by its length."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from gossamer.loop_lag import METRIC, LoopLagMonitor, oversleep
from tests.waiting import eventually

BLOCK = 0.3


def count_at_least(registry: CollectorRegistry, bound: str) -> float:
    """Observations above the bucket ``le=bound``: the count minus that bucket's."""
    total = registry.get_sample_value(f"{METRIC}_count") or 0.0
    below = registry.get_sample_value(f"{METRIC}_bucket", {"le": bound}) or 0.0
    return total - below


def test_oversleep_is_the_lateness_and_never_negative() -> None:
    assert oversleep(10.0, 10.35, 0.1) == pytest.approx(0.25)
    assert oversleep(10.0, 10.099, 0.1) == 0.0


def test_a_non_positive_interval_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="interval must be positive"):
        LoopLagMonitor(CollectorRegistry(), interval=0)


async def test_a_blocked_loop_is_recorded_as_its_lag() -> None:
    registry = CollectorRegistry()
    monitor = LoopLagMonitor(registry, interval=0.01)
    task = asyncio.create_task(monitor.run())
    try:
        await eventually(lambda: registry.get_sample_value(f"{METRIC}_count"),
                         what="a first observation")
        before = count_at_least(registry, "0.25")  # 0 unless the machine stalled us
        time.sleep(BLOCK)  # hold the loop, as a long regeneration would
        await eventually(lambda: count_at_least(registry, "0.25") >= before + 1,
                         what="the block to be recorded")
        assert (registry.get_sample_value(f"{METRIC}_sum") or 0.0) >= BLOCK - 0.01 - 0.005
    finally:
        task.cancel()
    assert f"{METRIC}_bucket{{le=\"0.001\"}}" in generate_latest(registry).decode()
