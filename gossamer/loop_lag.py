"""The event loop's lag, as a Prometheus histogram: how late a control plane's loop runs.

A control plane serves everything (the API, the agent API, ADS, heartbeats, ACKs) on one
asyncio loop, so anything that holds the loop (a long regeneration, a large decode)
delays every other caller by as much. ``LoopLagMonitor`` measures that delay the way
Node's ``monitorEventLoopDelay`` and Go's scheduler-latency metrics do, from inside:
it sleeps ``interval`` seconds and records how much later than asked it woke up. A loop
blocked for 2 s shows as one observation of about 2 s; an idle loop costs one wake-up
per ``interval`` (100 ms by default: a few microseconds of CPU each).

The histogram is ``gossamer_event_loop_lag_seconds`` in the registry given (the CP's
``/metrics``), with buckets from 1 ms up to 10 s. ``oversleep`` is the pure part.
"""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, Histogram

METRIC = "gossamer_event_loop_lag_seconds"
INTERVAL = 0.1
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def oversleep(asked_at: float, woke_at: float, interval: float) -> float:
    """How much later than ``asked_at + interval`` the sleeper woke, never negative (a
    clock that rounds may wake it a hair early)."""
    return max(0.0, woke_at - asked_at - interval)


class LoopLagMonitor:
    """Records the running loop's lag every ``interval`` seconds until cancelled."""

    def __init__(self, registry: CollectorRegistry, interval: float = INTERVAL) -> None:
        if interval <= 0:
            raise ValueError(f"the loop lag interval must be positive, not {interval}")
        self.interval = interval
        self.histogram = Histogram(METRIC, "How much later than asked the event loop ran a "
                                   "timer (the loop's lag)", buckets=BUCKETS,
                                   registry=registry)

    async def run(self) -> None:
        """Sleep, measure the oversleep, record it; forever (cancel to stop)."""
        loop = asyncio.get_running_loop()
        while True:
            asked_at = loop.time()
            await asyncio.sleep(self.interval)
            self.histogram.observe(oversleep(asked_at, loop.time(), self.interval))
