"""A fleet round yields so that the streams its deliveries wake never hold one loop
turn for much more than a slice (``zone_cp.fleet._Slices``).

Each delivery here schedules what a woken stream does, 2 ms of work in the next loop
turn; a sentinel callback that schedules itself again numbers the turns. The round may
deliver only what the measured turns say fits a slice.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from proxy.envoy import ProxyResources
from tests.unit.test_context_destinations import policy, to
from tests.unit.test_fleet_dependencies import Held, apply, fleet_of_mesh, settle
from zone_cp.xds_resources import Entries

STREAM_WORK = 0.002


async def test_the_streams_a_slice_wakes_fit_in_about_a_slice() -> None:
    manager, state, fleet, held, task = await fleet_of_mesh()
    loop = asyncio.get_running_loop()
    turn = 0
    ran: Counter[int] = Counter()

    def tick() -> None:
        nonlocal turn
        turn += 1
        loop.call_soon(tick)

    def stream() -> None:
        ran[turn] += 1
        until = time.perf_counter() + STREAM_WORK
        while time.perf_counter() < until:
            pass

    def woken(held_sink: Held, node: str) -> None:
        sink = held_sink.sink(node)

        def deliver(generated: ProxyResources, entries: Entries) -> None:
            sink(generated, entries)
            loop.call_soon(stream)

        fleet.join(node, held_sink.registered[node], deliver)

    try:
        await fleet.round()
        for node in list(held.registered):  # join again, each with a stream behind it
            woken(held, node)
        # Slices of 20 ms, from a batch of 4: 2 ms of stream work each, the streams
        # of 4 take 8 ms (under half a slice: the batch doubles), of 8 take 16 ms
        # (kept); without the batch, a slice would deliver all 40 (about 0.3 ms each).
        fleet._slices.seconds, fleet._slices.batch = 0.02, 4
        tick()
        await settle(
            manager,
            state,
            apply(
                policy(
                    "MeshTimeout",
                    "everyone",
                    {"targetRef": {"kind": "Mesh"}, "to": [to(None, {"connectionTimeout": "9s"})]},
                )
            ),
        )
        ran.clear()
        assert await fleet.round() == len(held.registered)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert sum(ran.values()) == len(held.registered)
        turns = [ran[t] for t in sorted(ran)]
        assert max(turns) <= 10, turns
    finally:
        task.cancel()
