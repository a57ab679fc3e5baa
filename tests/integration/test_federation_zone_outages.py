"""Faults in a federation over real gRPC with TLS: a stopped zone goes offline and, back,
gets only what it missed; a zone whose network goes silent goes offline within the
heartbeat timeout.
"""

from __future__ import annotations

import asyncio
import time

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from global_cp.app import GlobalControlPlane
from gossamer.model.registry import parse_document
from gossamer.resources import ResourceManager
from gossamer.store.base import ListQuery
from sync.zone_link import GLOBAL_KINDS
from tests.integration.federation_env import (
    DEAD_AFTER,
    TIMEOUT_URL,
    Planes,
    converged,
    online,
    ports,
    timeout_policy,
)
from tests.waiting import eventually
from zone_cp.app import ZoneControlPlane

SLACK = 0.5  # scheduling, the check's polling and the stream teardown


async def count(cp: GlobalControlPlane | ZoneControlPlane, kind: str) -> int:
    assert cp.store is not None
    return (await cp.store.list(ListQuery(kind))).total


class Settled:
    """Online, every type answered once, and no response to the zone unanswered. The
    counts add up over the zone's streams, and a stream the suite's 1 s stall limit
    tears down under load takes its unanswered responses with it (several per type
    when a large type is cut into responses): those can never be answered, so after a
    redial (a new ``connected_at``) what was unanswered at that moment is the floor.
    What the zone then holds is checked by the test's own assertions (the restart sends
    only what it missed)."""

    def __init__(self, cp: GlobalControlPlane, zone: str) -> None:
        self.cp, self.zone = cp, zone
        self.seen: float | None = None
        self.lost: dict[str, int] = {}

    def __call__(self) -> bool:
        z = self.cp.insights.get(self.zone)
        unanswered = {t: n - z.acked[t] - z.nacked[t] for t, n in z.sent.items()}
        if z.connected_at != self.seen:
            if self.seen is not None:  # a redial: the dead stream's share stays
                self.lost = unanswered
            self.seen = z.connected_at
        kinds = len(GLOBAL_KINDS) + 1  # + ZoneIngress
        return (online(self.cp, self.zone) and len(z.sent) == kinds
                and all(n <= self.lost.get(t, 0) for t, n in unanswered.items()))


async def test_a_stopped_zone_goes_offline_and_gets_only_what_it_missed(
        planes: Planes, spans: InMemorySpanExporter) -> None:
    global_cp = await planes.global_cp()
    manager = ResourceManager(global_cp.store)  # type: ignore[arg-type]
    for i in range(200):
        await manager.apply(parse_document(timeout_policy(f"policy-{i}", 5)))
    east = await planes.zone(global_cp, "east")
    await eventually(lambda: _count_is(east, "MeshTimeout", 200), what="200 policies in east")
    # Including the intermediate the global signs for east's CSR, which comes last.
    await eventually(lambda: _count_is(east, "ZoneCertificate", 1), what="east's intermediate")
    # (no speed asserted here: 200 policies and every kind, on a machine the suite loads)
    await eventually(Settled(global_cp, "east"), timeout=30,
                     what="every type ACKed by east")

    stopped = time.monotonic()
    await planes.stop(east)
    await eventually(lambda: not global_cp.insights.get("east").online,
                     timeout=DEAD_AFTER + SLACK, interval=0.01, what="east Offline")
    offline_after = time.monotonic() - stopped
    assert offline_after <= DEAD_AFTER + SLACK
    assert global_cp.insights.get("east").to_json()["status"] == "Offline"

    await manager.apply(parse_document(timeout_policy("policy-7", 9)))
    spans.clear()
    east = await planes.zone(global_cp, "east")  # the same data directory
    await eventually(lambda: online(global_cp, "east"), what="east Online again")
    await eventually(lambda: converged([east], {"policy-7": "9s"}), what="the change in east")
    assert await count(east, "MeshTimeout") == 200

    sent = _resources_sent(spans, "east")
    assert sent[TIMEOUT_URL] == 1, sent  # the one it missed, not 200
    assert sum(sent.values()) == 1, {t: n for t, n in sent.items() if n}  # nothing else


async def _count_is(cp: GlobalControlPlane | ZoneControlPlane, kind: str, n: int) -> bool:
    return await count(cp, kind) == n


def _resources_sent(spans: InMemorySpanExporter, zone: str) -> dict[str, int]:
    """Type URL -> resources the global sent to ``zone`` (from its ``sync.delta.send``)."""
    sent: dict[str, int] = {}
    for span in spans.get_finished_spans():
        attrs = span.attributes or {}
        if span.name == "sync.delta.send" and str(attrs["sync.subscriber"]).startswith(
                zone + "#"):
            type_url = str(attrs["sync.type"])
            sent[type_url] = sent.get(type_url, 0) + int(attrs["sync.updated"])  # type: ignore[call-overload]
    return sent


class Relay:
    """A TCP relay between a zone and the global that can go silent like a pulled cable:
    no FIN, no RST, just nothing delivered, until ``heal`` drops every connection."""

    def __init__(self, target_port: int) -> None:
        self._target = target_port
        self._silent = asyncio.Event()
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def cut(self) -> None:
        self._silent.set()

    def heal(self) -> None:
        self._silent.clear()
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    async def stop(self) -> None:
        self.heal()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target)
        except OSError:
            writer.transport.abort()
            return
        self._writers += [writer, up_writer]
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer),
                             return_exceptions=True)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            if self._silent.is_set():
                continue  # swallowed: the peer hears nothing
            writer.write(data)
            await writer.drain()
        writer.transport.abort()


async def test_a_silent_zone_goes_offline_within_the_heartbeat_timeout(
        planes: Planes) -> None:
    global_cp = await planes.global_cp()
    relay = Relay(ports(global_cp)[1])
    await relay.start()
    try:
        east = await planes.zone(global_cp, "east", sync_port=relay.port)
        await eventually(lambda: online(global_cp, "east"))

        relay.cut()
        cut_at = time.monotonic()
        await eventually(lambda: not global_cp.insights.get("east").online,
                         timeout=DEAD_AFTER + SLACK, interval=0.01, what="east Offline")
        offline_after = time.monotonic() - cut_at
        # Detected by the heartbeat timeout (nothing closed the connections), and in time.
        assert DEAD_AFTER / 2 <= offline_after <= DEAD_AFTER + SLACK, offline_after
        assert "nothing received" in global_cp.insights.get("east").last_error
        # The zone noticed too, by its own heartbeat timeout.
        await eventually(lambda: "nothing received" in east.sync.status.last_error,
                         timeout=DEAD_AFTER + SLACK)

        relay.heal()
        await eventually(lambda: online(global_cp, "east"), what="east Online again")
        manager = ResourceManager(global_cp.store)  # type: ignore[arg-type]
        await manager.apply(parse_document(timeout_policy("after", 3)))
        await eventually(lambda: converged([east], {"after": "3s"}))
    finally:
        await relay.stop()

