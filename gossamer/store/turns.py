"""Bounded steps on the event loop: long loops give the loop a turn every ``SLICE``.

A control plane's API shares one asyncio loop with its store watch, its xDS server and
its sync: any loop over a batch of thousands (decoding a request body, the results of a
store write, a watch's events, a sync response) holds every other request for as long as
it runs. Such a loop calls ``await turns.tick()`` after each item: a clock read, and a
``sleep(0)`` once ``SLICE`` seconds of work have run since the last turn. Time rather
than a count, so that a step stays short whatever an item costs and however busy the
machine is. A thread would not help this work: it is pure Python, and holds the GIL.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from typing import TypeVar

T = TypeVar("T")

# Longest run of work between two turns of the event loop, in seconds.
SLICE = 0.01


class Turns:
    """Counts a loop's work since its last turn; ``tick`` yields when it passed ``slice_``."""

    def __init__(self, slice_: float = SLICE) -> None:
        self._slice = slice_
        self._deadline = time.perf_counter() + slice_

    def due(self) -> bool:
        return time.perf_counter() >= self._deadline

    async def tick(self) -> None:
        if time.perf_counter() >= self._deadline:
            await asyncio.sleep(0)
            self._deadline = time.perf_counter() + self._slice


async def sliced(items: Iterable[T], slice_: float = SLICE) -> AsyncIterator[T]:
    """``items``, with a turn of the loop whenever ``slice_`` seconds of work ran."""
    turns = Turns(slice_)
    for item in items:
        yield item
        await turns.tick()
