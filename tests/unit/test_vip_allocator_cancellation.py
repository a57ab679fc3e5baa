"""The VIP allocator stops when cancelled, even as a change wakes it.

Before Python 3.12, ``asyncio.wait_for`` with a timeout returns the awaited result
when a cancellation arrives in the same loop turn as that result, and the cancellation
is lost: the allocator's task would go on running after the zone CP cancelled it. The
allocator waits with a timeout whenever something is due (here a gone service's grace
period), and a state change both wakes it and (through a second listener) cancels it.
"""

from __future__ import annotations

import asyncio

from authority.bootstrap import bootstrap
from gossamer.model.base import Resource
from gossamer.resources import ResourceManager
from gossamer.store.memory import MemoryStore
from tests.unit.test_mesh_dns import dataplane, zone_on
from tests.waiting import eventually


async def test_a_cancel_that_arrives_with_a_wake_up_stops_the_allocator() -> None:
    store = MemoryStore()
    await bootstrap(ResourceManager(store))
    async with zone_on(store) as zone:
        allocator = zone.allocator(grace=60)
        task = asyncio.create_task(allocator.run())
        try:
            await zone.apply(dataplane("b1", "backend"))
            await eventually(lambda: zone.state.get("VirtualIP", "backend", "default") is not None)
            # backend goes away: its VIP is kept for the grace period, so the allocator
            # now sleeps with a timeout (until the release is due).
            rounds = allocator.rounds
            await zone.manager.delete("Dataplane", "b1", "default")
            await eventually(lambda: allocator.rounds > rounds)
            await zone.settled()

            # The allocator listened first: each change sets its wake-up, then cancels it.
            def cancel(_res: Resource | None) -> None:
                task.cancel()

            unlisten = zone.state.listen(cancel)
            try:
                await zone.apply(dataplane("w1", "web"))
                # asyncio.wait, which does not cancel the task when it times out.
                await asyncio.wait({task}, timeout=5)
                assert task.cancelled(), "the allocator outlived its cancellation"
            finally:
                unlisten()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
