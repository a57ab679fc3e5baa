"""How long a subscriber takes to answer what it was sent: delivery latency and NACKs.

A delta response carries a ``nonce``; the subscriber's ACK or NACK of it carries the same
value as ``response_nonce``. ``Deliveries`` remembers when each response left
(``sent``) and, when its answer comes back (``answered``), records the time between them
in a histogram of the stream's label — for an Envoy, the time from our push to Envoy
having applied it; for a zone, the time from the global's send to the zone having
stored the change (a zone ACKs only after storing). A NACK is counted per label and
type; its latency is recorded too (the subscriber answered).

It is the edge between ``sync.observed.Observed`` (``observe`` has its signature after
the stream key and label) and a Prometheus collector (``zone_cp.xds_metrics``,
``global_cp``'s sync lag), and pure: the caller passes ``now``. What it holds is bounded:
at most ``max_pending`` unanswered nonces per stream (the oldest dropped first: a
subscriber that never answers them would otherwise grow it forever) and nothing of a
stream after ``forget``.
"""

from __future__ import annotations

import bisect
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any

from sync.outcomes import Outcome

# From 1 ms (an idle Envoy on loopback) to 30 s (a zone storing a large first sync).
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
           30.0)
MAX_PENDING = 256


@dataclass
class Histogram:
    """Cumulative-bucket histogram in Prometheus' shape (``le`` bounds, then +Inf)."""

    bounds: tuple[float, ...] = BUCKETS
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def buckets(self) -> list[tuple[str, int]]:
        """``(le, cumulative count)`` pairs ending with ``+Inf``, as exposition wants."""
        out, running = [], 0
        for bound, n in zip((*map(repr, self.bounds), "+Inf"), self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out


class Deliveries:
    """Response → answer latency per label, NACKs per (label, type), per-stream nonces."""

    def __init__(self, bounds: tuple[float, ...] = BUCKETS,
                 max_pending: int = MAX_PENDING) -> None:
        self._bounds = bounds
        self._max_pending = max_pending
        self._pending: dict[str, OrderedDict[str, float]] = {}
        self.latency: dict[str, Histogram] = {}
        self.nacks: Counter[tuple[str, str]] = Counter()

    def sent(self, stream: str, nonce: str, now: float) -> None:
        if not nonce:
            return
        pending = self._pending.setdefault(stream, OrderedDict())
        pending[nonce] = now
        while len(pending) > self._max_pending:
            pending.popitem(last=False)

    def answered(self, stream: str, label: str, nonce: str, type_url: str, nack: bool,
                 now: float) -> float | None:
        """Record the answer to ``nonce``; its latency, or None for a nonce not pending
        (answered already, dropped, or never ours)."""
        if nack:
            self.nacks[(label, type_url)] += 1
        pending = self._pending.get(stream)
        sent_at = pending.pop(nonce, None) if pending is not None else None
        if sent_at is None:
            return None
        latency = max(0.0, now - sent_at)
        self.histogram(label).observe(latency)
        return latency

    def observe(self, stream: str, label: str, message: Any, outcome: Outcome,
                now: float) -> None:
        """``Observed``'s report for one message of a publishing stream."""
        if outcome is Outcome.SENT:
            self.sent(stream, message.nonce, now)
        elif outcome in (Outcome.ACKED, Outcome.NACKED):
            self.answered(stream, label, message.response_nonce, message.type_url,
                          outcome is Outcome.NACKED, now)

    def forget(self, stream: str) -> None:
        """The stream ended: its unanswered nonces never will be."""
        self._pending.pop(stream, None)

    def histogram(self, label: str) -> Histogram:
        return self.latency.setdefault(label, Histogram(self._bounds))

    def pending(self, stream: str) -> int:
        return len(self._pending.get(stream, ()))
