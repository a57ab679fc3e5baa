"""What the global knows about each zone's connection: the insights behind ``inspect zones``.

Each replica's view is kept in memory by its sync server and updated from the streams
themselves (each stream is wrapped in ``sync.observed.Observed``, which reports what
crosses it; the counts are a ``sync.outcomes.Tally`` per zone), so a zone is Online
exactly while it has a live stream; a stream that stalls is torn down by its heartbeat
timeout and the zone goes Offline within that bound. Prometheus metrics
(``gossamer_sync_*``) are updated alongside.
``global_cp.insight_store`` stores each replica's view, and the API answers from the
records of every replica merged, so every replica answers alike.

On a GlobalToZone stream the global publishes: its responses count as ``sent`` and the
zone's answers as ``acked``/``nacked``. On a ZoneToGlobal stream the zone's responses
count as ``received`` and the global's NACKs of them as ``refused``.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter as Tallied
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from sync.deliveries import Deliveries
from sync.delivery_metrics import DeliveryCollector
from sync.observed import Observed
from sync.outcomes import Outcome, Tally
from sync.stream import MessageStream


@dataclass
class ZoneInsight:
    zone: str
    streams: int = 0
    connected_at: float | None = None
    disconnected_at: float | None = None
    last_update: float | None = None
    version: str = ""
    tally: Tally = field(default_factory=Tally)
    last_error: str = ""

    @property
    def online(self) -> bool:
        return self.streams > 0

    # type URL -> count, one property per outcome (0 for a type never counted)
    @property
    def sent(self) -> Tallied[str]:
        return self.tally.by_type(Outcome.SENT)

    @property
    def acked(self) -> Tallied[str]:
        return self.tally.by_type(Outcome.ACKED)

    @property
    def nacked(self) -> Tallied[str]:
        return self.tally.by_type(Outcome.NACKED)

    @property
    def received(self) -> Tallied[str]:
        return self.tally.by_type(Outcome.RECEIVED)

    @property
    def refused(self) -> Tallied[str]:
        return self.tally.by_type(Outcome.REFUSED)

    def to_json(self) -> dict[str, Any]:
        def stamp(t: float | None) -> str | None:
            return None if t is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))

        totals = self.tally.totals()
        kinds = [t for t in self.tally if (c := self.tally.of(t)).sent or c.received]
        return {
            "zone": self.zone, "status": "Online" if self.online else "Offline",
            "streams": self.streams, "connectedAt": stamp(self.connected_at),
            "disconnectedAt": stamp(self.disconnected_at), "lastUpdate": stamp(self.last_update),
            "version": self.version, "lastError": self.last_error,
            "totals": {"sent": totals.sent, "acked": totals.acked, "nacked": totals.nacked,
                       "received": totals.received, "refused": totals.refused},
            "byType": {k.removeprefix("gossamer.io/"): _counts_json(self.tally, k)
                       for k in kinds},
        }


def _counts_json(tally: Tally, type_url: str) -> dict[str, int]:
    c = tally.of(type_url)
    return {"sent": c.sent, "acked": c.acked, "nacked": c.nacked, "received": c.received,
            "refused": c.refused}


class Insights:
    def __init__(self, registry: CollectorRegistry, clock: Any = time.time) -> None:
        self._zones: dict[str, ZoneInsight] = {}
        self._clock = clock
        # Set when a stream comes or goes: the publisher stores the change at once.
        self.changed = asyncio.Event()
        self.messages = Counter("gossamer_sync_messages", "Zone sync messages by outcome",
                                ["zone", "type", "outcome"], registry=registry)
        self.online = Gauge("gossamer_sync_zone_online", "1 while a zone has a live stream",
                            ["zone"], registry=registry)
        self.rejections = Counter("gossamer_sync_rejected_streams",
                                  "Zone streams refused, by reason", ["reason"], registry=registry)
        # The zone sync lag: from a GlobalToZone response to the zone's ACK (after storing).
        self.deliveries = Deliveries()
        registry.register(DeliveryCollector(
            self.deliveries, "gossamer_zone_sync_lag_seconds",
            "From the global sending a change to the zone ACKing it (stored)", "zone",
            "gossamer_zone_sync_nacks"))

    def get(self, zone: str) -> ZoneInsight:
        return self._zones.setdefault(zone, ZoneInsight(zone))

    def all(self) -> list[ZoneInsight]:
        return sorted(self._zones.values(), key=lambda z: z.zone)

    def connected(self, zone: str, version: str) -> None:
        z = self.get(zone)
        z.streams += 1
        z.version = version
        if z.streams == 1:
            z.connected_at = self._clock()
        self.online.labels(zone).set(1)
        self.changed.set()

    def disconnected(self, zone: str, error: str = "") -> None:
        z = self.get(zone)
        z.streams = max(0, z.streams - 1)
        if error:
            z.last_error = error
        if z.streams == 0:
            self.deliveries.forget(zone)
            z.disconnected_at = self._clock()
            self.online.labels(zone).set(0)
        self.changed.set()

    def count(self, zone: str, type_url: str, outcome: Outcome) -> None:
        z = self.get(zone)
        z.tally.add(type_url, outcome)
        if outcome in (Outcome.SENT, Outcome.RECEIVED):
            z.last_update = self._clock()
        self.messages.labels(zone, type_url.removeprefix("gossamer.io/"), outcome.value).inc()

    def observe(self, inner: MessageStream, zone: str, publishing: bool) -> Observed:
        """``inner``, counting what crosses it for ``zone`` (``publishing``: GlobalToZone)."""

        def report(message: Any, outcome: Outcome) -> None:
            self.count(zone, message.type_url, outcome)
            if publishing:
                self.deliveries.observe(zone, zone, message, outcome, time.monotonic())

        return Observed(inner, report, publishing=publishing)
