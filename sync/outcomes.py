"""What happened to the delta messages of a link, counted by type URL: the one tally.

Every sync link counts the same five outcomes, from the publisher's side or the
subscriber's: responses ``sent`` and ``received``, the subscriber's answers to them
(``acked``, ``nacked``), and a publisher's NACKs of what a subscriber-side peer sent
(``refused``). The engine counts what it sends and settles per session
(``Engine.counters``), the global's insights count each zone's streams
(``global_cp.insights``), and the zone CP counts each Envoy's ADS stream
(``zone_cp.xds.ProxyInsight``), all with these types. Which outcome a wire message is,
is decided at the stream edge (``sync.observed``).

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, fields
from enum import StrEnum


class Outcome(StrEnum):
    SENT = "sent"  # a response went to the subscriber
    ACKED = "acked"  # the subscriber accepted a response
    NACKED = "nacked"  # the subscriber refused a response
    RECEIVED = "received"  # a response came from the peer we subscribe to
    REFUSED = "refused"  # we NACKed a response the peer sent


@dataclass
class Counts:
    """One type URL's totals by outcome."""

    sent: int = 0
    acked: int = 0
    nacked: int = 0
    received: int = 0
    refused: int = 0

    def add(self, outcome: Outcome, n: int = 1) -> None:
        setattr(self, outcome.value, getattr(self, outcome.value) + n)

    def __iadd__(self, other: Counts) -> Counts:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self


class Tally:
    """``Counts`` by type URL, and the last NACK's text (for ``inspect``)."""

    def __init__(self) -> None:
        self._types: dict[str, Counts] = {}
        self.last_nack = ""
        # Type URLs whose latest answer was a NACK (an ACK of a later response clears it).
        self.nacking: set[str] = set()

    def add(self, type_url: str, outcome: Outcome) -> None:
        self._types.setdefault(type_url, Counts()).add(outcome)
        if outcome is Outcome.ACKED:
            self.nacking.discard(type_url)

    def add_counts(self, type_url: str, counts: Counts) -> None:
        """Add totals counted elsewhere (another replica's, read from the store)."""
        self._types.setdefault(type_url, Counts()).__iadd__(counts)

    def nack(self, type_url: str, detail: str) -> None:
        """Count a NACK of ``type_url`` and keep its (bounded) text."""
        self.add(type_url, Outcome.NACKED)
        self.last_nack = detail[:2000]
        self.nacking.add(type_url)

    def of(self, type_url: str) -> Counts:
        """A copy of one type's counts (zeros for a type never counted)."""
        counts = Counts()
        counts += self._types.get(type_url, Counts())
        return counts

    def by_type(self, outcome: Outcome) -> Counter[str]:
        """type URL → how many messages had ``outcome``, for the types that had one
        (any other type reads 0)."""
        return Counter({t: n for t, c in self._types.items()
                        if (n := getattr(c, outcome.value))})

    def totals(self) -> Counts:
        out = Counts()
        for counts in self._types.values():
            out += counts
        return out

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._types))
