"""``gossamer.fifo``: the per-stream queue and wake-up flag keep asyncio's semantics that
the streams rely on (order, no item lost to a cancelled wait, a flag set before the wait)."""

from __future__ import annotations

import asyncio

import pytest

from gossamer.fifo import Fifo, Wakeup


async def test_items_come_out_in_order_and_a_waiting_reader_is_woken() -> None:
    fifo: Fifo[int] = Fifo()
    reader = asyncio.create_task(fifo.get())
    await asyncio.sleep(0)
    assert not reader.done()
    fifo.put_nowait(1)
    fifo.put_nowait(2)
    assert await asyncio.wait_for(reader, 5) == 1
    assert fifo.qsize() == 1 and await fifo.get() == 2 and fifo.empty()
    with pytest.raises(asyncio.QueueEmpty):
        fifo.get_nowait()


async def test_a_wait_cut_by_a_timeout_loses_nothing() -> None:
    fifo: Fifo[str] = Fifo()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await fifo.get()
    # The item arrives as the wait is cancelled: it stays for the next reader.
    waiting = asyncio.create_task(fifo.get())
    await asyncio.sleep(0)
    fifo.put_nowait("kept")
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    fifo.put_nowait("second")
    assert [await fifo.get(), fifo.get_nowait()] == ["kept", "second"]


async def test_a_wakeup_set_before_the_wait_returns_at_once_and_has_one_waiter() -> None:
    flag = Wakeup()
    flag.set()
    await asyncio.wait_for(flag.wait(), 5)
    flag.clear()
    first = asyncio.create_task(flag.wait())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="one waiter"):
        await flag.wait()
    flag.set()
    await asyncio.wait_for(first, 5)
    assert flag.is_set()
