"""The election's state machine on a fake clock: never two leaders, fencing across pauses.

The "database" is ``LocalLeases`` on the same fake clock (it grants a lease the way the
Postgres statement does: renew for the holder, take over when expired, epoch bumped on a
change of hands). Processes are simulated: their attempts reach the store after a delay
and answer after another, and a process can be paused (it handles nothing) for any time.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gossamer.election import core
from gossamer.election.core import (
    Abdicate,
    Attempt,
    Failed,
    Granted,
    Refused,
    Release,
    Role,
    Start,
    State,
    Stop,
    Tick,
    Timing,
    acting,
)
from gossamer.election.leases import Grant, LocalLeases, NotLeader
from gossamer.model.base import Resource
from gossamer.model.mesh import MeshSpec
from gossamer.store.base import Put
from gossamer.store.memory import MemoryStore

TIMING = Timing(ttl=10.0, renew_every=2.0, retry_every=1.0, margin=2.0)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_grant_starts_the_work_and_renewals_keep_it() -> None:
    s, cmds = core.step(State(), Tick(0.0), TIMING)
    assert cmds == [Attempt()]
    s, cmds = core.step(s, Granted(0.0, 0.1, 1, "a"), TIMING)
    assert cmds == [Start(1)] and acting(s, 0.1) == 1
    s, cmds = core.step(s, Tick(2.0), TIMING)
    assert cmds == [Attempt()]
    s, cmds = core.step(s, Granted(2.0, 2.2, 1, "a"), TIMING)
    assert cmds == [] and s.acting_until == 2.0 + 10.0 - 2.0


def test_a_leader_stops_when_no_renewal_succeeds_before_its_lease_ends_minus_the_margin(
) -> None:
    s, _ = core.step(State(), Tick(0.0), TIMING)
    s, _ = core.step(s, Granted(0.0, 0.1, 1, "a"), TIMING)
    for t in (2.0, 4.0, 6.0):
        s, _ = core.step(s, Tick(t), TIMING)
        s, cmds = core.step(s, Failed(t, t + 0.5, "db down"), TIMING)
        assert not any(isinstance(c, Stop) for c in cmds)
    assert acting(s, 7.99) == 1 and acting(s, 8.0) is None  # 0 + ttl - margin
    s, cmds = core.step(s, Tick(8.0), TIMING)
    assert Stop(1, "the lease was not renewed in time") in cmds and s.role is Role.CANDIDATE


def test_a_grant_that_arrives_after_its_proof_expired_is_not_acted_on() -> None:
    s, _ = core.step(State(), Tick(0.0), TIMING)
    s, cmds = core.step(s, Granted(0.0, 9.0, 1, "a"), TIMING)
    assert not any(isinstance(c, Start) for c in cmds) and acting(s, 9.0) is None
    assert Attempt() in cmds  # asks again at once


def test_another_holder_or_a_new_epoch_stops_the_old_term() -> None:
    s, _ = core.step(State(), Tick(0.0), TIMING)
    s, _ = core.step(s, Granted(0.0, 0.1, 1, "a"), TIMING)
    s2, cmds = core.step(s, Refused(2.0, 2.1, "b"), TIMING)
    assert cmds[0] == Stop(1, "another holder has the lease") and s2.role is Role.FOLLOWER
    assert s2.holder == "b"
    s3, cmds = core.step(s, Granted(2.0, 2.1, 2, "a"), TIMING)
    assert cmds == [Stop(1, "the lease moved to epoch 2"), Start(2)] and acting(s3, 2.1) == 2


def test_abdicating_releases_the_lease() -> None:
    s, _ = core.step(State(), Tick(0.0), TIMING)
    s, _ = core.step(s, Granted(0.0, 0.1, 3, "a"), TIMING)
    s, cmds = core.step(s, Abdicate(1.0, "work failed"), TIMING)
    assert cmds[:2] == [Release(3), Stop(3, "work failed")] and acting(s, 1.0) is None


def test_timings_that_leave_no_room_for_two_renewals_are_refused() -> None:
    with pytest.raises(ValueError, match="two renewals"):
        Timing(ttl=5.0, renew_every=2.0, retry_every=1.0, margin=1.5)
    Timing.for_ttl(3.0)  # the derived ones fit


# -- two processes on one store ---------------------------------------------------------


@dataclass
class Proc:
    name: str
    state: State = field(default_factory=State)
    paused_until: float = 0.0
    inbox: list[tuple[float, core.Event]] = field(default_factory=list)  # (arrival, event)
    work_epoch: int | None = None  # the term its work runs in (Start .. Stop)


@dataclass
class World:
    clock: Clock
    leases: LocalLeases
    procs: list[Proc]
    store: MemoryStore
    committed: list[int] = field(default_factory=list)  # epochs of fenced writes, in order

    async def handle(self, p: Proc, event: core.Event, delays: tuple[float, float]) -> None:
        p.state, cmds = core.step(p.state, event, TIMING)
        for cmd in cmds:
            if isinstance(cmd, Attempt):
                await self.attempt(p, delays)
            elif isinstance(cmd, Start):
                assert p.work_epoch is None
                p.work_epoch = cmd.epoch
            elif isinstance(cmd, Stop):
                p.work_epoch = None
            elif isinstance(cmd, Release):
                await self.leases.release("global", p.name, cmd.epoch)

    async def attempt(self, p: Proc, delays: tuple[float, float]) -> None:
        """The store answers at ``now + delays[0]``; the answer arrives after ``delays[1]``."""
        sent = self.clock.now
        p.inbox.append((sent + delays[0], _Pending(sent, delays[1])))

    async def deliver(self, p: Proc, delays: tuple[float, float]) -> None:
        now = self.clock.now
        if now < p.paused_until:
            return
        while due := sorted((e for e in p.inbox if e[0] <= now), key=lambda e: e[0]):
            at, event = due[0]
            p.inbox.remove(due[0])
            if isinstance(event, _Pending):  # reaches the store now: decide, answer later
                got = await self.leases.acquire("global", p.name, TIMING.ttl)
                answer: core.Event = (Granted(event.sent, at + event.back, got.epoch, p.name)
                                      if isinstance(got, Grant) else
                                      Refused(event.sent, at + event.back, got.holder))
                p.inbox.append((at + event.back, answer))
            else:
                await self.handle(p, _at(event, now), delays)
        await self.handle(p, Tick(now), delays)

    async def work(self, p: Proc) -> None:
        """What a process's singleton work does when it runs: a fenced write, if it
        believes it leads (a woken process runs its work before its next tick)."""
        if p.work_epoch is None:
            return
        fence = core.Fence("global", p.name, p.work_epoch)
        try:
            await self.leases.write(self.store, [_op(len(self.committed))], fence)
        except NotLeader:
            return
        self.committed.append(p.work_epoch)


@dataclass(frozen=True)
class _Pending:
    sent: float
    back: float


def _at(event: core.Event, now: float) -> core.Event:
    """An answer handled late (its process was paused) is handled at ``now``."""
    if isinstance(event, Granted):
        return Granted(event.sent_at, now, event.epoch, event.holder)
    if isinstance(event, Refused):
        return Refused(event.sent_at, now, event.holder)
    return event


def _op(i: int) -> Put:
    return Put(Resource(type="Mesh", name=f"m{i}", spec=MeshSpec()))


steps = st.lists(st.tuples(
    st.sampled_from(["advance", "pause", "work"]), st.integers(0, 1),
    st.floats(0.01, 15.0), st.tuples(st.floats(0.0, 3.0), st.floats(0.0, 3.0))),
    min_size=1, max_size=60)


@given(steps)
@settings(max_examples=150, deadline=None)
def test_two_processes_never_both_act_and_stale_terms_never_write(plan: list) -> None:
    asyncio.run(_simulate(plan))


async def _simulate(plan: list) -> None:
    clock = Clock()
    world = World(clock, LocalLeases(clock), [Proc("a"), Proc("b")], MemoryStore())
    for what, who, amount, delays in plan:
        p = world.procs[who]
        if what == "pause":
            p.paused_until = clock.now + amount
        elif what == "work":
            await world.work(p)
        else:
            clock.now += amount
        for q in world.procs:
            await world.deliver(q, delays)
        leading = [q.name for q in world.procs if acting(q.state, clock.now) is not None]
        assert len(leading) <= 1, f"both lead at {clock.now}: {world.procs}"
        assert world.committed == sorted(world.committed), "a stale term wrote after a new one"


async def test_a_paused_leader_wakes_after_its_lease_and_neither_acts_nor_writes() -> None:
    clock = Clock()
    world = World(clock, LocalLeases(clock), [Proc("a"), Proc("b")], MemoryStore())
    a, b = world.procs
    await world.deliver(a, (0.0, 0.0))
    await world.deliver(a, (0.0, 0.0))
    assert acting(a.state, clock.now) == 1 and a.work_epoch == 1
    a.paused_until = 30.0  # SIGSTOP past the lease
    for t in range(1, 30):
        clock.now = float(t)
        await world.deliver(b, (0.0, 0.0))
        await world.deliver(b, (0.0, 0.0))
    assert acting(b.state, clock.now) == 2
    clock.now = 30.0  # SIGCONT: a's work still thinks it runs in epoch 1
    assert acting(a.state, clock.now) is None and a.work_epoch == 1
    await world.work(a)
    await world.work(b)
    assert world.committed == [2]  # a's write of epoch 1 was fenced off
    await world.deliver(a, (0.0, 0.0))
    assert a.work_epoch is None and a.state.role is not Role.LEADER
