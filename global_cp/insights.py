"""What the global knows about each zone's connection: the insights behind ``inspect zones``.

Kept in memory by the sync server and updated from the streams themselves (``Observed``
wraps a stream and counts what crosses it), so a zone is Online exactly while it has a
live stream; a stream that stalls is torn down by its heartbeat timeout and the zone goes
Offline within that bound. Prometheus metrics (``gossamer_sync_*``) are updated alongside.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from dataclasses import dataclass, field
from typing import Any

from envoy.service.discovery.v3 import discovery_pb2
from prometheus_client import CollectorRegistry, Counter, Gauge

from sync.stream import HEARTBEAT, MessageStream


@dataclass
class ZoneInsight:
    zone: str
    streams: int = 0
    connected_at: float | None = None
    disconnected_at: float | None = None
    last_update: float | None = None
    version: str = ""
    sent: Tally[str] = field(default_factory=Tally)
    acked: Tally[str] = field(default_factory=Tally)
    nacked: Tally[str] = field(default_factory=Tally)
    received: Tally[str] = field(default_factory=Tally)
    refused: Tally[str] = field(default_factory=Tally)
    last_error: str = ""

    @property
    def online(self) -> bool:
        return self.streams > 0

    def to_json(self) -> dict[str, Any]:
        def stamp(t: float | None) -> str | None:
            return None if t is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))

        kinds = sorted(set(self.sent) | set(self.received))
        return {
            "zone": self.zone, "status": "Online" if self.online else "Offline",
            "streams": self.streams, "connectedAt": stamp(self.connected_at),
            "disconnectedAt": stamp(self.disconnected_at), "lastUpdate": stamp(self.last_update),
            "version": self.version, "lastError": self.last_error,
            "totals": {"sent": sum(self.sent.values()), "acked": sum(self.acked.values()),
                       "nacked": sum(self.nacked.values()),
                       "received": sum(self.received.values()),
                       "refused": sum(self.refused.values())},
            "byType": {k.removeprefix("gossamer.io/"): {
                "sent": self.sent[k], "acked": self.acked[k], "nacked": self.nacked[k],
                "received": self.received[k], "refused": self.refused[k]} for k in kinds},
        }


class Insights:
    def __init__(self, registry: CollectorRegistry, clock: Any = time.time) -> None:
        self._zones: dict[str, ZoneInsight] = {}
        self._clock = clock
        self.messages = Counter("gossamer_sync_messages", "Zone sync messages by outcome",
                                ["zone", "type", "outcome"], registry=registry)
        self.online = Gauge("gossamer_sync_zone_online", "1 while a zone has a live stream",
                            ["zone"], registry=registry)
        self.rejections = Counter("gossamer_sync_rejected_streams",
                                  "Zone streams refused, by reason", ["reason"], registry=registry)

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

    def disconnected(self, zone: str, error: str = "") -> None:
        z = self.get(zone)
        z.streams = max(0, z.streams - 1)
        if error:
            z.last_error = error
        if z.streams == 0:
            z.disconnected_at = self._clock()
            self.online.labels(zone).set(0)

    def count(self, zone: str, type_url: str, outcome: str) -> None:
        z = self.get(zone)
        getattr(z, outcome)[type_url] += 1
        if outcome in ("sent", "received"):
            z.last_update = self._clock()
        self.messages.labels(zone, type_url.removeprefix("gossamer.io/"), outcome).inc()


class Observed:
    """A ``MessageStream`` that counts the delta messages crossing it for one zone.

    ``publishing`` (GlobalToZone): the global's responses count as ``sent`` and the zone's
    answers as ``acked``/``nacked``. Otherwise (ZoneToGlobal) the zone's responses count
    as ``received`` and the global's NACKs of them as ``refused``; the global's own ACKs
    are not counted, so ``acked``/``nacked`` always mean the zone's answers.
    """

    def __init__(self, inner: MessageStream, insights: Insights, zone: str,
                 publishing: bool) -> None:
        self._inner = inner
        self._insights = insights
        self._zone = zone
        self._publishing = publishing

    async def read(self) -> Any:
        message = await self._inner.read()
        self._observe(message)
        return message

    async def write(self, message: Any) -> None:
        await self._inner.write(message)
        self._observe(message)

    def _observe(self, message: Any) -> None:
        if message is None or getattr(message, "type_url", HEARTBEAT) == HEARTBEAT:
            return
        if isinstance(message, discovery_pb2.DeltaDiscoveryResponse):
            outcome = "sent" if self._publishing else "received"
            self._insights.count(self._zone, message.type_url, outcome)
        elif isinstance(message, discovery_pb2.DeltaDiscoveryRequest) and message.response_nonce:
            nack = bool(message.error_detail.code)
            if self._publishing:
                self._insights.count(self._zone, message.type_url, "nacked" if nack else "acked")
            elif nack:
                self._insights.count(self._zone, message.type_url, "refused")
