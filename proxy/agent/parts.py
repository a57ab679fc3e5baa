"""An agent's long-running parts (its Session, Envoy's supervisor, certificate rotation,
token refresh), one task each: started one by one, waited on together (the first to end
for good ends the agent, with its reason), cancelled together when the agent stops.
The sidecar's agent, the zone ingress's and the zone egress's keep their parts alike."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


class Parts:
    def __init__(self) -> None:
        self._tasks: list[asyncio.Task[None]] = []

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.append(task)
        return task

    async def first_end(self) -> None:
        """Return when a part ends for good (Envoy cannot start); re-raise why. At once
        when none was started."""
        if not self._tasks:
            return
        done, _ = await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()

    async def cancel(self) -> None:
        """Cancel every part and wait for them to end."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
