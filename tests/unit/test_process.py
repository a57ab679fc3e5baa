"""gossamer.process.run_until_signal: the one runner of the CPs, the agent and the ingress.

Real signals to this process: the runner's handlers are installed before ``start`` and
removed when it returns, so pytest's own handling is untouched afterwards.
"""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from gossamer.process import run_until_signal


class Component:
    """Records what the runner does with it; ``wait`` ends when ``ended`` is set."""

    def __init__(self, *, slow_start: bool = False, fail: Exception | None = None) -> None:
        self.calls: list[str] = []
        self.started = asyncio.Event()
        self.ended = asyncio.Event()
        self._slow_start = slow_start
        self._fail = fail

    async def start(self) -> None:
        self.calls.append("start")
        self.started.set()
        if self._slow_start:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.calls.append("start cancelled")
                raise

    async def wait(self) -> None:
        await self.ended.wait()
        if self._fail is not None:
            raise self._fail

    async def stop(self, drain: bool = True) -> None:
        self.calls.append("stop" if drain else "abort")


async def signal_when(event: asyncio.Event, sig: signal.Signals) -> None:
    await event.wait()
    await asyncio.sleep(0)  # let the runner reach its wait
    os.kill(os.getpid(), sig)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_a_signal_while_running_stops_and_returns(sig: signal.Signals) -> None:
    c = Component()
    sender = asyncio.create_task(signal_when(c.started, sig))
    await asyncio.wait_for(run_until_signal(c, abort=lambda: c.stop(drain=False)), 10)
    await sender
    assert c.calls == ["start", "stop"]


async def test_a_signal_while_starting_cancels_the_start() -> None:
    c = Component(slow_start=True)
    sender = asyncio.create_task(signal_when(c.started, signal.SIGTERM))
    await asyncio.wait_for(run_until_signal(c), 10)
    await sender
    assert c.calls == ["start", "start cancelled"]


async def test_a_component_that_ends_is_stopped() -> None:
    c = Component()
    c.ended.set()
    await asyncio.wait_for(run_until_signal(c), 10)
    assert c.calls == ["start", "stop"]


async def test_a_failure_aborts_and_is_raised_again() -> None:
    c = Component(fail=RuntimeError("envoy cannot start"))
    c.ended.set()
    with pytest.raises(RuntimeError, match="envoy cannot start"):
        await asyncio.wait_for(run_until_signal(c, abort=lambda: c.stop(drain=False)), 10)
    assert c.calls == ["start", "abort"]


async def test_the_handlers_are_removed_afterwards() -> None:
    c = Component()
    c.ended.set()
    before = signal.getsignal(signal.SIGTERM)
    await run_until_signal(c)
    assert signal.getsignal(signal.SIGTERM) == before


async def test_sighup_reloads_and_the_run_goes_on() -> None:
    c = Component()
    reloads: list[int] = []

    def reload() -> None:
        reloads.append(1)
        if len(reloads) == 2:
            c.ended.set()

    async def hang_up_twice() -> None:
        await c.started.wait()
        for _ in range(2):
            await asyncio.sleep(0)
            os.kill(os.getpid(), signal.SIGHUP)

    sender = asyncio.create_task(hang_up_twice())
    await asyncio.wait_for(run_until_signal(c, reload=reload), 10)
    await sender
    assert reloads == [1, 1] and c.calls == ["start", "stop"]
    assert signal.getsignal(signal.SIGHUP) == signal.SIG_DFL
