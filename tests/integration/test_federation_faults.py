"""Faults in a federation over real gRPC with TLS: control planes that die and come back,
a network that goes silent, a database restarted, a resource a zone refuses; and the
insights that show it all (overviews over HTTP, ``/metrics``, OpenTelemetry spans).

Heartbeats are short (every ``BEAT`` seconds, dead after ``DEAD_AFTER``) so that the
bounds these tests measure are those of the protocol, not of a test's patience.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import gossamer
from global_cp.app import GlobalControlPlane
from gossamer.errors import NotFound
from gossamer.model.base import Resource
from gossamer.model.registry import parse_document
from gossamer.resources import ResourceManager
from gossamer.store.base import ListQuery
from sync.applier import zone_scoped_name
from sync.zone_link import GLOBAL_KINDS
from tests.builders import dataplane_doc
from tests.cluster import sample, scrape, span_recorder, start_global, start_zone
from tests.pg import PostgresCluster, free_port
from tests.waiting import eventually
from zone_cp.app import ZoneControlPlane
from zone_cp.sync_client import Redial

BEAT, DEAD_AFTER = 0.2, 1.0
SLACK = 0.5  # scheduling, the check's polling and the stream teardown
# Zones redial a global that is down at most every second (30 s in production), so a
# test waits for convergence, not for a long backoff.
QUICK_REDIAL = Redial(initial=0.2, maximum=1.0)
TIMEOUT_URL = "gossamer.io/MeshTimeout"
REPO = Path(__file__).resolve().parents[2]


def timeout_policy(name: str, seconds: int = 5) -> dict[str, Any]:
    return {"type": "MeshTimeout", "name": name, "mesh": "default",
            "spec": {"to": [{"targetRef": {"kind": "MeshService", "name": "backend"},
                             "default": {"http": {"requestTimeout": f"{seconds}s"}}}]}}


@pytest.fixture(scope="session")
def recorder() -> InMemorySpanExporter:
    return span_recorder()


@pytest.fixture
def spans(recorder: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    recorder.clear()
    yield recorder
    recorder.clear()


class Planes:
    """The control planes a test starts; whatever is still running is stopped at the end."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.running: list[GlobalControlPlane | ZoneControlPlane] = []

    async def global_cp(self, store: str = "sqlite", api_port: int = 0,
                        sync_port: int = 0) -> GlobalControlPlane:
        cp = await start_global(self.root / "global", store, BEAT, DEAD_AFTER,
                                api_addr=f"127.0.0.1:{api_port}",
                                sync_addr=f"127.0.0.1:{sync_port}")
        self.running.append(cp)
        return cp

    async def zone(self, global_cp: GlobalControlPlane | None, name: str,
                   **kwargs: Any) -> ZoneControlPlane:
        cp = await start_zone(global_cp, name, self.root / f"zone-{name}", heartbeat=BEAT,
                              timeout=DEAD_AFTER, **kwargs)
        cp.sync.redial = QUICK_REDIAL
        self.running.append(cp)
        return cp

    async def stop(self, cp: GlobalControlPlane | ZoneControlPlane) -> None:
        self.running.remove(cp)
        await stop_or_show(cp)


@pytest.fixture
async def planes(tmp_path: Path) -> AsyncIterator[Planes]:
    p = Planes(tmp_path)
    yield p
    for cp in reversed(p.running):
        await stop_or_show(cp)


async def stop_or_show(cp: GlobalControlPlane | ZoneControlPlane, within: float = 15) -> None:
    """Stop ``cp``; if that hangs, fail with the stacks of the tasks still running."""
    stopping = asyncio.create_task(cp.stop(), name=f"stopping {type(cp).__name__}")
    done, _ = await asyncio.wait([stopping], timeout=within)
    if done:
        return stopping.result()
    stacks = [f"--- {task!r}\n" + "".join(f"  {line}\n" for line in _awaiting(task.get_coro()))
              for task in asyncio.all_tasks()]
    stopping.cancel()
    pytest.fail(f"{type(cp).__name__}.stop() still running after {within}s:\n"
                + "".join(stacks))


def _awaiting(coro: Any) -> list[str]:
    """Where a suspended coroutine is, down its chain of awaits."""
    lines = []
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None)
        if frame is not None:
            lines.append(f"{frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None)
    return lines


def ports(cp: GlobalControlPlane) -> tuple[int, int]:
    assert cp.sync is not None
    return cp.bound_api_addr[1], cp.sync.port


async def get(cp: GlobalControlPlane | ZoneControlPlane, kind: str, name: str,
              mesh: str = "") -> Resource | None:
    assert cp.store is not None
    try:
        return await cp.store.get(kind, name, mesh)
    except NotFound:
        return None


async def timeout_of(cp: ZoneControlPlane, name: str) -> str | None:
    res = await get(cp, "MeshTimeout", name, "default")
    if res is None:
        return None
    return str(res.spec_dict()["to"][0]["default"]["http"]["requestTimeout"])


async def count(cp: GlobalControlPlane | ZoneControlPlane, kind: str) -> int:
    assert cp.store is not None
    return (await cp.store.list(ListQuery(kind))).total


async def converged(zones: list[ZoneControlPlane], expect: dict[str, str | None]) -> bool:
    """Every zone holds exactly these MeshTimeouts (name -> timeout, None: absent)."""
    for zone in zones:
        for name, value in expect.items():
            if await timeout_of(zone, name) != value:
                return False
    return True


def online(cp: GlobalControlPlane, zone: str) -> bool:
    return cp.insights.get(zone).streams == 2


def settled(cp: GlobalControlPlane, zone: str) -> bool:
    """Online, every type answered once, and no response to the zone unanswered."""
    z = cp.insights.get(zone)
    return (online(cp, zone) and len(z.sent) == len(GLOBAL_KINDS) + 1  # + ZoneIngress
            and all(z.acked[t] + z.nacked[t] == n for t, n in z.sent.items()))


# -- the global dies ------------------------------------------------------------------


async def test_zones_converge_after_the_global_is_stopped_and_restarted(
        planes: Planes) -> None:
    global_cp = await planes.global_cp()
    manager = ResourceManager(global_cp.store)  # type: ignore[arg-type]
    await manager.apply(parse_document(timeout_policy("keep", 5)))
    await manager.apply(parse_document(timeout_policy("change", 5)))
    await manager.apply(parse_document(timeout_policy("drop", 5)))
    zones = [await planes.zone(global_cp, name) for name in ("east", "west", "north")]
    await eventually(lambda: converged(zones, {"keep": "5s", "change": "5s", "drop": "5s"}))
    api_port, sync_port = ports(global_cp)

    await planes.stop(global_cp)
    await eventually(lambda: not any(z.sync.status.connected for z in zones),
                     what="the zones to notice")
    global_cp = await planes.global_cp(api_port=api_port, sync_port=sync_port)
    manager = ResourceManager(global_cp.store)  # type: ignore[arg-type]
    await manager.apply(parse_document(timeout_policy("change", 9)))
    await manager.delete("MeshTimeout", "drop", "default")
    await manager.apply(parse_document(timeout_policy("new", 7)))

    await eventually(lambda: converged(zones, {"keep": "5s", "change": "9s", "drop": None,
                                               "new": "7s"}), what="the zones to converge")
    for zone in zones:
        await eventually(lambda z=zone: online(global_cp, z.settings.zone))


class GlobalProcess:
    """``gossamer global run`` as a real process, which a test can kill -9."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.api_port, self.sync_port = free_port(), free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / "global.log"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    async def start(self) -> None:
        gossamer_cmd = Path(sys.executable).parent / "gossamer"
        env = {**os.environ, "PYTHONPATH": str(REPO)}  # this checkout, whatever is installed
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [str(gossamer_cmd), "global", "run", "--data-dir", str(self.data_dir),
                 "--api-addr", f"127.0.0.1:{self.api_port}",
                 "--sync-addr", f"127.0.0.1:{self.sync_port}",
                 "--heartbeat-interval", f"{BEAT}s", "--heartbeat-timeout", f"{DEAD_AFTER}s"],
                env=env, stdout=log, stderr=subprocess.STDOUT)
        await eventually(self._ready, timeout=20, interval=0.05, what="the global process")

    async def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"the global exited: {self.log.read_text()[-2000:]}")
        async with httpx.AsyncClient(base_url=self.api_url) as client:
            return (await client.get("/readyz")).status_code == 200

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def client(self) -> httpx.AsyncClient:
        token = (self.data_dir / "admin-token").read_text().strip()
        return httpx.AsyncClient(base_url=self.api_url,
                                 headers={"Authorization": f"Bearer {token}"})

    async def put(self, doc: dict[str, Any]) -> None:
        async with self.client() as c:
            r = await c.put(f"/meshes/{doc['mesh']}/meshtimeouts/{doc['name']}", json=doc)
            assert r.status_code in (200, 201), r.text

    async def zone_token(self, zone: str, path: Path) -> Path:
        async with self.client() as c:
            r = await c.post("/tokens/zone", json={"zone": zone, "validFor": "1h"})
            assert r.status_code == 200, r.text
        path.write_text(r.json()["token"])
        return path


@pytest.fixture
def global_process(tmp_path: Path) -> Iterator[GlobalProcess]:
    process = GlobalProcess(tmp_path / "global")
    yield process
    process.kill()


async def test_zones_converge_after_the_global_process_is_killed(
        planes: Planes, global_process: GlobalProcess, tmp_path: Path) -> None:
    await global_process.start()
    await global_process.put(timeout_policy("slow", 5))
    ca = global_process.data_dir / "tls" / "ca.pem"
    zones = [await planes.zone(None, name, sync_port=global_process.sync_port, ca=ca,
                               token_file=await global_process.zone_token(
                                   name, tmp_path / f"{name}.token"))
             for name in ("east", "west")]
    await eventually(lambda: converged(zones, {"slow": "5s"}))

    global_process.kill()
    await eventually(lambda: not any(z.sync.status.connected for z in zones),
                     what="the zones to notice")
    await global_process.start()
    await global_process.put(timeout_policy("slow", 9))
    await global_process.put(timeout_policy("new", 7))
    await eventually(lambda: converged(zones, {"slow": "9s", "new": "7s"}), timeout=15,
                     what="the zones to converge")


# -- a zone dies ----------------------------------------------------------------------


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
    await eventually(lambda: settled(global_cp, "east"), what="every type ACKed by east")

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


# -- the global's database ------------------------------------------------------------


@pytest.mark.postgres
async def test_a_global_on_postgres_restarted_with_its_database_loses_nothing(
        postgres_cluster: PostgresCluster, postgres_db_url: str, planes: Planes) -> None:
    # (planes after the database: fixtures are torn down in reverse, so the control
    # planes stop before the database is dropped)
    global_cp = await planes.global_cp(store=postgres_db_url)
    manager = ResourceManager(global_cp.store)  # type: ignore[arg-type]
    await manager.apply(parse_document(timeout_policy("slow", 5)))
    zones = [await planes.zone(global_cp, name) for name in ("east", "west")]
    await eventually(lambda: converged(zones, {"slow": "5s"}))
    await zones[0].manager.apply(parse_document(dataplane_doc("backend-1")))
    from_east = zone_scoped_name("east", "default", "backend-1")
    await eventually(lambda: get(global_cp, "Dataplane", from_east, "default"))
    api_port, sync_port = ports(global_cp)
    keys_before = set((await global_cp.zone_tokens.keys()).public)

    # The global first: stopping it while its database is down can hang (reported: a
    # background task of the global swallows the cancellation when the store fails).
    await planes.stop(global_cp)
    postgres_cluster.stop()
    postgres_cluster.start()
    global_cp = await planes.global_cp(store=postgres_db_url, api_port=api_port,
                                       sync_port=sync_port)

    # Nothing lost: policies, zones, what the zones sent, the keys their tokens need.
    assert await timeout_of(global_cp, "slow") == "5s"  # type: ignore[arg-type]
    assert await get(global_cp, "Zone", "east") and await get(global_cp, "Zone", "west")
    assert await get(global_cp, "Dataplane", from_east, "default")
    assert set((await global_cp.zone_tokens.keys()).public) == keys_before
    # The zones come back with the tokens they had, and converge on new changes.
    manager = ResourceManager(global_cp.store)  # type: ignore[arg-type]
    await manager.apply(parse_document(timeout_policy("slow", 9)))
    await eventually(lambda: converged(zones, {"slow": "9s"}), timeout=15)
    for zone in zones:
        await eventually(lambda z=zone: online(global_cp, z.settings.zone))
    await zones[1].manager.apply(parse_document(dataplane_doc("backend-2")))
    await eventually(lambda: get(global_cp, "Dataplane",
                                 zone_scoped_name("west", "default", "backend-2"), "default"))


# -- a resource refused ---------------------------------------------------------------


async def test_a_nacked_resource_does_not_hold_back_the_others(planes: Planes) -> None:
    global_cp = await planes.global_cp()
    east = await planes.zone(global_cp, "east")
    await eventually(lambda: get(east, "Mesh", "default"))
    await eventually(lambda: online(global_cp, "east"))
    assert global_cp.store is not None
    # Written straight to the global's store, past the API's validation: a label the
    # zone's parser refuses, as a newer global's resource might be to an older zone.
    good = parse_document(timeout_policy("broken", 5))
    await global_cp.store.create(Resource(type=good.type, name=good.name, mesh=good.mesh,
                                          spec=good.spec, labels={"not a label!": "x"}))
    await eventually(lambda: global_cp.insights.get("east").nacked[TIMEOUT_URL] >= 1,
                     what="east to NACK the broken policy")

    manager = ResourceManager(global_cp.store)
    for i in range(3):
        await manager.apply(parse_document(timeout_policy(f"after-{i}", 4)))
    await eventually(lambda: converged([east], {"after-0": "4s", "after-1": "4s",
                                                "after-2": "4s"}))
    assert await get(east, "MeshTimeout", "broken", "default") is None
    overview = global_cp.insights.get("east").to_json()
    assert overview["byType"]["MeshTimeout"]["nacked"] >= 1
    assert overview["byType"]["MeshTimeout"]["acked"] >= 1
    samples = await scrape(global_cp.api_url)
    assert sample(samples, "gossamer_sync_messages_total", zone="east", type="MeshTimeout",
                  outcome="nacked") >= 1

    # Fixed at the global, it is no longer held back.
    await manager.apply(parse_document(timeout_policy("broken", 6)))
    await eventually(lambda: converged([east], {"broken": "6s"}))


async def test_a_zone_resource_the_global_refuses_does_not_hold_back_the_others(
        planes: Planes) -> None:
    global_cp = await planes.global_cp()
    east = await planes.zone(global_cp, "east")
    await eventually(lambda: get(east, "Mesh", "default"))
    assert east.store is not None
    good = parse_document(dataplane_doc("broken"))
    await east.store.create(Resource(type=good.type, name=good.name, mesh=good.mesh,
                                     spec=good.spec, labels={"not a label!": "x"}))
    await eventually(lambda: global_cp.insights.get("east").refused["gossamer.io/Dataplane"],
                     what="the global to refuse east's broken dataplane")
    for i in range(3):
        await east.manager.apply(parse_document(dataplane_doc(f"after-{i}")))
    for i in range(3):
        await eventually(lambda n=f"after-{i}": get(
            global_cp, "Dataplane", zone_scoped_name("east", "default", n), "default"))
    assert await get(global_cp, "Dataplane", zone_scoped_name("east", "default", "broken"),
                     "default") is None
    overview = global_cp.insights.get("east").to_json()
    assert overview["byType"]["Dataplane"]["refused"] >= 1
    assert overview["totals"]["nacked"] == 0  # east refused nothing the global sent
    samples = await scrape(global_cp.api_url)
    assert sample(samples, "gossamer_sync_messages_total", zone="east", type="Dataplane",
                  outcome="refused") >= 1


# -- insights -------------------------------------------------------------------------


async def test_zone_overviews_metrics_and_spans_show_the_sync(
        planes: Planes, spans: InMemorySpanExporter) -> None:
    global_cp = await planes.global_cp()
    east = await planes.zone(global_cp, "east")
    west = await planes.zone(global_cp, "west")
    manager = ResourceManager(global_cp.store)  # type: ignore[arg-type]
    await manager.apply(parse_document(timeout_policy("slow", 5)))
    await eventually(lambda: converged([east, west], {"slow": "5s"}))
    await east.manager.apply(parse_document(dataplane_doc("backend-1")))
    await eventually(lambda: get(global_cp, "Dataplane",
                                 zone_scoped_name("east", "default", "backend-1"), "default"))
    await eventually(lambda: online(global_cp, "east") and online(global_cp, "west"))
    await planes.stop(west)
    await eventually(lambda: not global_cp.insights.get("west").online)

    headers = {"Authorization": f"Bearer {global_cp.admin_token}"}
    async with httpx.AsyncClient(base_url=global_cp.api_url, headers=headers) as client:
        one = await eventually(lambda: _acked_overview(client, "east"))
        everyone = (await client.get("/zones/_overviews")).json()
        assert (await client.get("/zones/nowhere/_overview")).status_code == 404
        unauthenticated = await httpx.AsyncClient(base_url=global_cp.api_url).get(
            "/zones/east/_overview")
    assert unauthenticated.status_code == 401

    insight = one["insight"]
    assert one["zone"]["name"] == "east"
    assert insight["status"] == "Online"
    assert insight["version"] == gossamer.__version__
    # (connected since the start, unless a loaded machine missed a heartbeat deadline)
    assert insight["connectedAt"] and insight["lastUpdate"]
    timeouts = insight["byType"]["MeshTimeout"]
    assert timeouts["sent"] >= 1 and timeouts["acked"] == timeouts["sent"]
    assert timeouts["nacked"] == 0
    assert insight["byType"]["Dataplane"]["received"] >= 1
    assert insight["byType"]["Dataplane"]["refused"] == 0
    assert insight["byType"]["Dataplane"]["acked"] == 0  # acked: only the zone's answers
    by_name = {item["name"]: item["insight"] for item in everyone["items"]}
    assert by_name.keys() == {"east", "west"}
    assert by_name["west"]["status"] == "Offline"
    assert by_name["west"]["connectedAt"] and by_name["west"]["disconnectedAt"]

    samples = await scrape(global_cp.api_url)
    assert sample(samples, "gossamer_sync_zone_online", zone="east") == 1
    assert sample(samples, "gossamer_sync_zone_online", zone="west") == 0
    assert sample(samples, "gossamer_sync_messages_total", zone="east", type="MeshTimeout",
                  outcome="sent") == timeouts["sent"]
    assert sample(samples, "gossamer_sync_messages_total", zone="east", type="Dataplane",
                  outcome="received") >= 1

    names = {(s.name, str((s.attributes or {}).get("sync.type")))
             for s in spans.get_finished_spans()}
    assert ("sync.delta.send", TIMEOUT_URL) in names  # the global to each zone
    assert ("sync.delta.apply", TIMEOUT_URL) in names  # each zone storing it
    assert ("sync.delta.send", "gossamer.io/Dataplane") in names  # a zone to the global
    assert ("sync.delta.apply", "gossamer.io/Dataplane") in names


async def _acked_overview(client: httpx.AsyncClient, zone: str) -> dict[str, Any] | None:
    response = await client.get(f"/zones/{zone}/_overview")
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    timeouts = body["insight"]["byType"].get("MeshTimeout", {})
    return body if timeouts.get("acked") and timeouts["acked"] == timeouts["sent"] else None
