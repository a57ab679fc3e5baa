"""One subscriber's view of one resource type: the state machine under the engine.

Theory of operation
-------------------

For each (subscriber, type) we keep:

``acked``
    name → version the subscriber is known to hold. It starts as the
    ``initial_versions`` of the subscriber's first request (resume), and changes only when
    the subscriber ACKs (or partly NACKs) a response: never on send.
``in_flight``
    the one response sent and not yet answered, by nonce, with the versions and removals
    it carried. One per type at a time (stop-and-wait): changes made meanwhile pile up in
    the desired snapshot and leave in one response after the answer. That bounds the
    memory a slow subscriber costs and makes every ACK unambiguous; the price is one round
    trip per batch, not per change.
``holds``
    name → the version the subscriber refused, how often, and until when it is held back.

What to send is ``reconcile(visible desired, acked)``: every visible resource whose version
differs from the acked one (or that is not acked at all), and every acked name no longer
visible (a removal). From that delta we drop the held resources whose hold has not expired;
everything else flows. A hold lapses as soon as the desired version differs from the
refused one (a fix is retried at once) or the resource is deleted.

A NACK that names its rejected resources (our subscribers do) applies the rest of the
response to ``acked`` and holds the named ones. A NACK that names nothing (Envoy) means
nothing was applied: every updated resource in the response is held, marked ``isolate``,
and retried *alone* when its backoff ends, so one bad resource cannot keep a good one that
shared its response from ever getting through. Removals are re-sent straight away.

A type known to be in sync at a snapshot generation (``quiet_at``: nothing was due at
it, or an ACKed response was the whole difference at it) skips reconciling until the
snapshot, the subscriptions or a hold change; this only saves work, never changes what
is sent.

A response is lost only with its stream, and a new stream is a new session whose
``acked`` comes from the subscriber's own report, so nothing here needs a resend timer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from sync.messages import WILDCARD, Entry, Nack, Request
from sync.outcomes import Counts


@dataclass(frozen=True)
class Delta:
    """Resources to send (by name) and names to remove, both in name order."""

    updated: Mapping[str, Entry] = field(default_factory=dict)
    removed: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.updated or self.removed)


def reconcile(desired: Mapping[str, Entry], acked: Mapping[str, str]) -> Delta:
    """What turns a subscriber holding ``acked`` (name → version) into ``desired``."""
    changed = sorted([name for name, entry in desired.items()
                      if acked.get(name) != entry.version])  # only these need an order
    removed = tuple(sorted([name for name in acked if name not in desired]))
    return Delta({name: desired[name] for name in changed}, removed)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff for refused resources: ``initial * factor**(n-1)``, capped."""

    initial: float = 1.0
    factor: float = 2.0
    maximum: float = 60.0

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.factor < 1 or self.maximum < self.initial:
            raise ValueError("backoff needs initial > 0, factor >= 1, maximum >= initial")

    def delay(self, attempts: int) -> float:
        return float(min(self.initial * self.factor ** (attempts - 1), self.maximum))


@dataclass(frozen=True)
class Limits:
    """Bounds on one response; a response always carries at least one change."""

    max_resources: int = 1000
    max_bytes: int = 2 * 1024 * 1024


@dataclass(frozen=True)
class Hold:
    """A refused resource version, held back until ``retry_at``."""

    version: str
    attempts: int
    retry_at: float
    isolate: bool


@dataclass(frozen=True)
class InFlight:
    nonce: str
    updated: Mapping[str, str]
    removed: frozenset[str]
    # The snapshot generation this response was the whole difference at (nothing held
    # back, nothing cut by the limits), if any: once it is ACKed, the subscriber holds
    # that snapshot exactly.
    whole_at: int | None = None


def limit(delta: Delta, limits: Limits) -> Delta:
    """The longest prefix of ``delta`` within ``limits`` (never empty if delta is not)."""
    updated: dict[str, Entry] = {}
    size = 0
    for name, entry in delta.updated.items():
        size += len(entry.payload.value)
        if updated and (len(updated) >= limits.max_resources or size > limits.max_bytes):
            return Delta(updated, ())
        updated[name] = entry
    room = max(limits.max_resources - len(updated), 0 if updated else 1)
    return Delta(updated, delta.removed[:room])


class TypeState:
    """The per-(subscriber, type) state machine; the engine drives one per type a session uses."""

    def __init__(self, request: Request) -> None:
        self.acked: dict[str, str] = dict(request.initial_versions)
        self.wildcard = not request.subscribe or WILDCARD in request.subscribe
        self.names: set[str] = set(request.subscribe - {WILDCARD})
        self.in_flight: InFlight | None = None
        self.holds: dict[str, Hold] = {}
        self.counters = Counts()  # sent, acked and nacked in this session
        self.answered_once = False  # the first response goes out even when empty
        # The snapshot generation at which there was nothing to send, while nothing on
        # this side (acked, subscriptions, holds) changed since: ``next_delta`` then
        # knows the answer without reconciling.
        self.quiet_at: int | None = None
        self._whole_at: int | None = None  # of the delta ``next_delta`` last returned

    # -- subscription -----------------------------------------------------------------

    def resubscribe(self, subscribe: Iterable[str], unsubscribe: Iterable[str]) -> None:
        if subscribe or unsubscribe:  # (an ACK's empty sets change nothing)
            self.quiet_at = None
            if self.in_flight is not None:
                self.in_flight = replace(self.in_flight, whole_at=None)
        for name in subscribe:
            if name == WILDCARD:
                self.wildcard = True
            else:
                self.names.add(name)
                self.acked.pop(name, None)  # a (re)subscribed resource is always sent
        for name in unsubscribe:
            if name == WILDCARD:
                self.wildcard = False
                self._forget(n for n in list(self.acked) if n not in self.names)
            else:
                self.names.discard(name)
                self._forget([name])  # the subscriber drops it itself: no removal is due

    def visible(self, desired: Mapping[str, Entry]) -> Mapping[str, Entry]:
        if self.wildcard:
            return desired
        return {n: desired[n] for n in self.names if n in desired}

    def _forget(self, names: Iterable[str]) -> None:
        for name in names:
            self.acked.pop(name, None)
            self.holds.pop(name, None)

    # -- answers ----------------------------------------------------------------------

    def settle(self, request: Request, now: float, backoff: Backoff) -> bool:
        """Apply an ACK or NACK; False if its nonce is not the one in flight (stale)."""
        flight = self.in_flight
        if flight is None or request.response_nonce != flight.nonce:
            return False
        self.in_flight = None
        self.quiet_at = None
        if request.error is None:
            self.counters.acked += 1
            self._apply(flight.updated, flight.removed)
            self.quiet_at = flight.whole_at
        else:
            self.counters.nacked += 1
            self._refuse(flight, request.error, now, backoff)
        return True

    def _apply(self, updated: Mapping[str, str], removed: Iterable[str]) -> None:
        for name, version in updated.items():
            self.acked[name] = version
            self.holds.pop(name, None)
        self._forget(removed)

    def _refuse(self, flight: InFlight, nack: Nack, now: float, backoff: Backoff) -> None:
        if nack.rejected is None:
            bad = dict(flight.updated)
        else:
            bad = {n: v for n, v in flight.updated.items() if n in nack.rejected}
            good = {n: v for n, v in flight.updated.items() if n not in bad}
            self._apply(good, flight.removed)
        for name, version in bad.items():
            prev = self.holds.get(name)
            attempts = prev.attempts + 1 if prev and prev.version == version else 1
            self.holds[name] = Hold(version, attempts, now + backoff.delay(attempts),
                                    isolate=nack.rejected is None)

    # -- sending ----------------------------------------------------------------------

    def next_delta(self, desired: Mapping[str, Entry], now: float, limits: Limits,
                   generation: int | None = None) -> Delta | None:
        """What to send now, or None (a response in flight, or nothing to say).

        ``generation`` numbers ``desired``'s changes (the engine's per-type counter): a
        state that found nothing to send at this generation, or whose ACKed response was
        the whole difference at it, with no holds and no subscription change since,
        answers None without reconciling again."""
        if self.in_flight is not None:
            return None
        if generation is not None and generation == self.quiet_at and not self.holds:
            return None
        visible = self.visible(desired)
        self._drop_lapsed_holds(visible)
        delta = reconcile(visible, self.acked)
        ready = {n: e for n, e in delta.updated.items() if not self._held(n, now)}
        probe = next((n for n in ready if n in self.holds and self.holds[n].isolate), None)
        if probe is not None:
            self._whole_at = None
            return Delta({probe: ready[probe]})
        out = limit(Delta(ready, delta.removed), limits)
        if out or not self.answered_once:
            whole = (len(ready) == len(delta.updated) == len(out.updated)
                     and len(out.removed) == len(delta.removed))
            self._whole_at = generation if whole else None
            return out
        self.quiet_at = generation
        return None

    def mark_sent(self, nonce: str, delta: Delta) -> None:
        self.in_flight = InFlight(nonce, {n: e.version for n, e in delta.updated.items()},
                                  frozenset(delta.removed), self._whole_at)
        self._whole_at = None
        self.answered_once = True
        self.counters.sent += 1

    def next_deadline(self, desired: Mapping[str, Entry]) -> float | None:
        """When a held resource becomes due again, if any is still wanted and refused."""
        visible = self.visible(desired)
        times = [h.retry_at for n, h in self.holds.items()
                 if n in visible and visible[n].version == h.version]
        return min(times, default=None)

    def _held(self, name: str, now: float) -> bool:
        hold = self.holds.get(name)
        return hold is not None and now < hold.retry_at

    def _drop_lapsed_holds(self, visible: Mapping[str, Entry]) -> None:
        lapsed = [n for n, h in self.holds.items()
                  if n not in visible or visible[n].version != h.version]
        for name in lapsed:
            del self.holds[name]
