"""Leader election as a pure state machine: one leader for a control plane's singleton work.

Theory of operation. A *lease* (one per name, e.g. ``global``) is held by one *holder*
(a process) in one *epoch* until it expires; the store grants and renews it in one
statement on its own clock, and a holder that differs, or an expired lease, bumps the
epoch. The epoch is the fencing token: every write of the leader's singleton work carries
it, and the store refuses one whose epoch is no longer the lease's (``Fence``).

This module decides, from the results of attempts and the local clock alone, when to
attempt, when to start the singleton work and when to stop it. The local clock is
monotonic and the store's is another one, so the leader only trusts what it can prove: a
grant that was *sent* at local time ``t`` holds the lease until at least ``t + ttl`` (the
store stamped it after ``t``), so the leader acts until ``t + ttl - margin`` and no later
unless a renewal sent after ``t`` succeeds. A process paused past that point wakes up
as a leader whose deadline has passed: ``acting(state, now)`` is already ``None`` before
any event is processed, and the store refuses its stale epoch anyway.

    candidate ──Granted──▶ leader (Start epoch)
    leader ──Granted (same epoch)──▶ leader, acting until sent_at + ttl - margin
    leader ──Granted (new epoch)──▶ leader (Stop old, Start new)
    leader ──Refused (another holder)──▶ follower (Stop)
    leader ──deadline passed (no renewal in time)──▶ candidate (Stop)
    leader ──Abdicate (its work failed, or shutting down)──▶ candidate (Stop, Release)
    follower | candidate ──Refused / Failed──▶ follower | candidate, retry later

Events carry ``now``; ``step`` returns the next state and the commands for the shell
(``gossamer.election.runner``) to carry out, in order.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import TypeAlias


class Role(enum.StrEnum):
    CANDIDATE = "candidate"  # does not know who leads (start, or the store failed)
    FOLLOWER = "follower"    # another holder has the lease
    LEADER = "leader"


@dataclass(frozen=True)
class Timing:
    """The lease's length and the rhythm of attempts, in seconds.

    ``ttl``: how long a grant holds the lease. ``renew_every``: how often the leader
    renews. ``retry_every``: how often a follower tries to take it. ``margin``: how long
    before the proven end of its lease a leader stops acting, time for its work to stop.
    A leader gets at least two renewals before it must stop (``ttl - margin`` is more
    than twice ``renew_every``), so one lost renewal costs nothing.
    """

    ttl: float = 10.0
    renew_every: float = 2.0
    retry_every: float = 1.0
    margin: float = 2.0

    def __post_init__(self) -> None:
        if min(self.ttl, self.renew_every, self.retry_every, self.margin) <= 0:
            raise ValueError("lease timings must be positive")
        if self.ttl - self.margin <= 2 * self.renew_every:
            raise ValueError(f"a lease of {self.ttl}s with a margin of {self.margin}s leaves "
                             f"no room for two renewals every {self.renew_every}s")

    @classmethod
    def for_ttl(cls, ttl: float) -> Timing:
        """Renew five times per lease, retry ten times, stop a fifth before the end."""
        return cls(ttl=ttl, renew_every=ttl / 5, retry_every=ttl / 10, margin=ttl / 5)


@dataclass(frozen=True)
class State:
    role: Role = Role.CANDIDATE
    epoch: int = 0                # the term being acted on, while LEADER
    acting_until: float = 0.0     # local time the leader must have stopped by
    next_attempt: float = 0.0     # local time of the next acquire/renew
    in_flight: bool = False       # an attempt was sent and has not answered
    holder: str = ""              # who holds the lease, as last seen ("" unknown)


# -- events ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Tick:
    now: float


@dataclass(frozen=True)
class Granted:
    """The store gave (or renewed) the lease to us in ``epoch``; ``sent_at`` is when the
    attempt left."""

    sent_at: float
    now: float
    epoch: int
    holder: str


@dataclass(frozen=True)
class Refused:
    """Another holder has an unexpired lease."""

    sent_at: float
    now: float
    holder: str


@dataclass(frozen=True)
class Failed:
    """The attempt did not answer (store down, timeout): nothing is known."""

    sent_at: float
    now: float
    reason: str


@dataclass(frozen=True)
class Abdicate:
    """Give the lease up now: the work failed, or the process is stopping."""

    now: float
    reason: str


Event: TypeAlias = Tick | Granted | Refused | Failed | Abdicate


# -- commands --------------------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    """Acquire or renew the lease, and feed the answer back as an event."""


@dataclass(frozen=True)
class Start:
    epoch: int


@dataclass(frozen=True)
class Stop:
    epoch: int
    reason: str


@dataclass(frozen=True)
class Release:
    """Tell the store the lease is free, so another holder need not wait for its end."""

    epoch: int


Command: TypeAlias = Attempt | Start | Stop | Release


@dataclass(frozen=True)
class Fence:
    """What every write of the singleton work carries: the store refuses it unless
    ``holder`` still holds lease ``name`` in ``epoch``, unexpired, when it commits."""

    name: str
    holder: str
    epoch: int


def acting(state: State, now: float) -> int | None:
    """The epoch the singleton work may act in at ``now``, or None.

    True only inside the proven lease: a leader whose deadline passed (a paused process
    that just woke) is not acting even before its next ``Tick``.
    """
    if state.role is Role.LEADER and now < state.acting_until:
        return state.epoch
    return None


def next_wakeup(state: State) -> float:
    """The local time at which ``Tick`` has something to do."""
    due = [] if state.in_flight else [state.next_attempt]
    if state.role is Role.LEADER:
        due.append(state.acting_until)
    return min(due) if due else float("inf")


def step(state: State, event: Event, timing: Timing) -> tuple[State, list[Command]]:
    """The next state and the commands to carry out, in order."""
    commands: list[Command] = []
    if isinstance(event, Granted):
        state = _granted(state, event, timing, commands)
    elif isinstance(event, Refused):
        state = _lost(state, event.holder, "another holder has the lease", commands)
        state = replace(state, role=Role.FOLLOWER, in_flight=False,
                        next_attempt=event.now + timing.retry_every)
    elif isinstance(event, Failed):
        state = replace(state, in_flight=False, next_attempt=event.now + min(
            timing.retry_every, timing.renew_every))
    elif isinstance(event, Abdicate):
        if state.role is Role.LEADER:
            commands.append(Release(state.epoch))
        state = _lost(state, "", event.reason, commands)
        state = replace(state, role=Role.CANDIDATE, next_attempt=event.now + timing.retry_every)
    return _tick(state, event.now, timing, commands), commands


def _granted(state: State, event: Granted, timing: Timing,
             commands: list[Command]) -> State:
    until = event.sent_at + timing.ttl - timing.margin
    state = replace(state, in_flight=False, holder=event.holder)
    if until <= event.now:
        # Too late to act on: the proof expired on the way back. Renew at once.
        return replace(state, next_attempt=event.now)
    if state.role is Role.LEADER and state.epoch != event.epoch:
        state = _lost(state, event.holder, f"the lease moved to epoch {event.epoch}", commands)
    if state.role is not Role.LEADER:
        commands.append(Start(event.epoch))
    # A candidate's acting_until is 0, a leader's only ever moves later.
    return replace(state, role=Role.LEADER, epoch=event.epoch,
                   acting_until=max(until, state.acting_until),
                   next_attempt=event.sent_at + timing.renew_every)


def _lost(state: State, holder: str, reason: str, commands: list[Command]) -> State:
    if state.role is Role.LEADER:
        commands.append(Stop(state.epoch, reason))
        return replace(state, role=Role.CANDIDATE, holder=holder, acting_until=0.0)
    return replace(state, holder=holder or state.holder)


def _tick(state: State, now: float, timing: Timing, commands: list[Command]) -> State:
    if state.role is Role.LEADER and now >= state.acting_until:
        state = _lost(state, "", "the lease was not renewed in time", commands)
        state = replace(state, next_attempt=min(state.next_attempt, now))
    if not state.in_flight and now >= state.next_attempt:
        commands.append(Attempt())
        state = replace(state, in_flight=True)
    return state
