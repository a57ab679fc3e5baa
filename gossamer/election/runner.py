"""The asyncio shell of the election: attempts, and the singleton work started and stopped.

``Election.run`` feeds ``core.step`` with ticks (at ``core.next_wakeup``), the answers of
attempts (each bounded by a timeout, so a hung database is a ``Failed``, never a stall)
and the end of the work, and carries out its commands. ``Stop`` cancels the work and
waits for it to finish before anything else happens; the core asks for it ``margin``
seconds before the earliest moment the lease can end, so the work has stopped before
another replica can be granted the lease. A write the work makes in between (a process
paused and woken up) carries its fence and is refused by the store (``FencedStore``).

Work that ends by itself (a bug, an error it does not handle) gives the lease up
(``Abdicate``), so another replica gets its chance; it is logged with its traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gossamer.election import core
from gossamer.election.core import Abdicate, Fence, Role, State, Tick, Timing
from gossamer.election.leases import FencedStore, Grant, Leases
from gossamer.errors import GossamerError
from gossamer.store.base import Store

log = logging.getLogger(__name__)

Work = Callable[[], Coroutine[Any, Any, None]]


def new_holder() -> str:
    """A name unique to this process, readable by an operator (host, pid)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Election:
    """Runs ``work`` while this process holds lease ``name``, and only then."""

    def __init__(self, leases: Leases, name: str, work: Work, *, timing: Timing,
                 holder: str | None = None, clock: Callable[[], float] = time.monotonic,
                 metrics: CollectorRegistry | None = None) -> None:
        self.name = name
        self.holder = holder or new_holder()
        self._leases = leases
        self._work = work
        self._timing = timing
        self._clock = clock
        self._state = State()
        self._events: deque[core.Event] = deque()
        self._poke = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self.fenced_off = 0  # writes of the work refused for want of a lease
        # Set once the first attempt has answered (and the work started if it won), so
        # a process can start its other parts knowing whether it leads.
        self.settled = asyncio.Event()
        if metrics is not None:
            self.register_metrics(metrics)

    def register_metrics(self, metrics: CollectorRegistry) -> None:
        """``gossamer_leader`` and ``gossamer_leader_fenced_writes``, read at scrape time."""
        metrics.register(_ElectionCollector(self))

    # -- what others ask ----------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        return core.acting(self._state, self._clock()) is not None

    @property
    def role(self) -> Role:
        return Role.LEADER if self.is_leader else self._state.role

    @property
    def leader(self) -> str:
        """The holder last seen ("" unknown)."""
        return self.holder if self.is_leader else self._state.holder

    def fence(self) -> Fence | None:
        epoch = core.acting(self._state, self._clock())
        return None if epoch is None else Fence(self.name, self.holder, epoch)

    async def wait_settled(self) -> None:
        """Until the first attempt has answered, for at most one renewal period."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._timing.renew_every):
                await self.settled.wait()

    def fenced(self, store: Store) -> FencedStore:
        """``store`` for the singleton work: writes refused outside this one's terms."""
        return FencedStore(store, self._leases, self.fence, self._count_fenced)

    def _count_fenced(self) -> None:
        self.fenced_off += 1

    def status(self) -> dict[str, object]:
        return {"lease": self.name, "holder": self.holder, "role": self.role.value,
                "leader": self.leader, "epoch": self._state.epoch if self.is_leader else None}

    # -- the loop -----------------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._loop()
        finally:
            await self._stop_work()
            for task in self._background:  # an attempt in flight: its answer is moot
                task.cancel()
            await asyncio.gather(*self._background, return_exceptions=True)
            if self._state.role is Role.LEADER:  # a clean stop hands over at once
                with contextlib.suppress(GossamerError, TimeoutError):
                    async with asyncio.timeout(self._timing.margin):
                        await self._leases.release(self.name, self.holder, self._state.epoch)
            await self._leases.close()

    async def _loop(self) -> None:
        while True:
            self._poke.clear()
            event = self._events.popleft() if self._events else Tick(self._clock())
            self._state, commands = core.step(self._state, event, self._timing)
            for command in commands:
                await self._carry_out(command)
            if isinstance(event, core.Granted | core.Refused | core.Failed):
                self.settled.set()
            if self._events:
                continue
            delay = core.next_wakeup(self._state) - self._clock()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(delay, 0.0)):
                    await self._poke.wait()

    async def _carry_out(self, command: core.Command) -> None:
        if isinstance(command, core.Attempt):
            self._spawn(self._attempt(self._clock()))
        elif isinstance(command, core.Start):
            log.info("%s: leader of lease %r in epoch %d", self.holder, self.name,
                     command.epoch)
            self._task = asyncio.create_task(self._work(), name=f"leader-{self.name}")
            self._task.add_done_callback(self._work_ended)
        elif isinstance(command, core.Stop):
            log.warning("%s: no longer leader of %r (epoch %d): %s", self.holder, self.name,
                        command.epoch, command.reason)
            await self._stop_work()
        elif isinstance(command, core.Release):
            self._spawn(self._release(command.epoch))

    async def _attempt(self, sent_at: float) -> None:
        """Acquire or renew, bounded; the answer goes back into the loop as an event."""
        event: core.Event
        try:
            async with asyncio.timeout(self._timing.renew_every):
                got = await self._leases.acquire(self.name, self.holder, self._timing.ttl)
        except (GossamerError, TimeoutError) as exc:
            reason = exc.detail if isinstance(exc, GossamerError) else "timed out"
            event = core.Failed(sent_at, self._clock(), reason)
        except Exception as exc:  # the shell's top level: an attempt must always answer
            log.exception("%s: lease attempt failed", self.holder)
            event = core.Failed(sent_at, self._clock(), repr(exc))
        else:
            event = (core.Granted(sent_at, self._clock(), got.epoch, self.holder)
                     if isinstance(got, Grant) else core.Refused(sent_at, self._clock(),
                                                                 got.holder))
        self._push(event)

    async def _release(self, epoch: int) -> None:
        with contextlib.suppress(GossamerError, TimeoutError):
            async with asyncio.timeout(self._timing.renew_every):
                await self._leases.release(self.name, self.holder, epoch)

    def _work_ended(self, task: asyncio.Task[None]) -> None:
        if task is not self._task or task.cancelled():
            return
        exc = task.exception()
        log.error("%s: the singleton work of %r ended; giving the lease up", self.holder,
                  self.name, exc_info=exc)
        self._task = None
        self._push(Abdicate(self._clock(), f"the work ended: {exc!r}"))

    async def _stop_work(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _push(self, event: core.Event) -> None:
        self._events.append(event)
        self._poke.set()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


class _ElectionCollector(Collector):
    def __init__(self, election: Election) -> None:
        self._election = election

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        e = self._election
        leader = GaugeMetricFamily("gossamer_leader", "1 while this replica holds the "
                                   "leader lease and runs the singleton work", labels=["lease"])
        leader.add_metric([e.name], float(e.is_leader))
        fenced = CounterMetricFamily("gossamer_leader_fenced_writes", "Writes of the "
                                     "singleton work refused because this replica's lease "
                                     "had ended", labels=["lease"])
        fenced.add_metric([e.name], float(e.fenced_off))
        yield leader
        yield fenced
