"""A small FIFO for one consumer task: what each long-lived stream needs, in less memory.

A zone CP keeps a queue or an event per connected proxy for as long as it is
connected. ``asyncio.Queue`` holds four deques (items, getters, putters, and its
``join`` event's waiters), about 2.5 KiB before any item, and ``asyncio.Event`` one
more; with one consumer and no bound neither is needed. ``Fifo`` is a list and, while
its consumer waits, one future; ``Wakeup`` is the future alone.

Neither loses an item to cancellation: ``get`` takes the item only once it runs again,
so a consumer cancelled while it waits (a timeout) leaves the item for the next ``get``.
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

T = TypeVar("T")


class Wakeup:
    """A flag one task waits on: ``set`` wakes it, ``clear`` lowers the flag."""

    __slots__ = ("_is_set", "_waiter")

    def __init__(self) -> None:
        self._is_set = False
        self._waiter: asyncio.Future[None] | None = None

    def set(self) -> None:
        self._is_set = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def clear(self) -> None:
        self._is_set = False

    def is_set(self) -> bool:
        return self._is_set

    async def wait(self) -> None:
        """Return once the flag is set (at once if it is). One waiter at a time."""
        while not self._is_set:
            if self._waiter is not None:
                raise RuntimeError("Wakeup has one waiter at a time")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None


class Fifo(Generic[T]):
    """An unbounded first-in first-out queue read by one task at a time."""

    __slots__ = ("_items", "_ready")

    def __init__(self) -> None:
        self._items: list[T] = []  # a handful at most: popping the front is cheap
        self._ready = Wakeup()

    def put_nowait(self, item: T) -> None:
        self._items.append(item)
        self._ready.set()

    async def get(self) -> T:
        await self._ready.wait()
        return self.get_nowait()

    def get_nowait(self) -> T:
        if not self._items:
            raise asyncio.QueueEmpty
        item = self._items.pop(0)
        if not self._items:
            self._ready.clear()
        return item

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items
