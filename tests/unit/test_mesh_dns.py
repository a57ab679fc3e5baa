"""A mesh's VIPs for its sidecars: the DNS table, the VIP listeners, the allocator task
over a memory store and the publisher that pushes tables to agent sessions."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from authority.bootstrap import bootstrap
from authority.token_authority import TokenAuthority
from gossamer.model.base import Resource
from gossamer.model.labels import VIP_OUTBOUNDS_LABEL
from gossamer.model.registry import parse_document
from gossamer.model.virtualip import SERVICE_LABEL, VirtualIPSpec
from gossamer.resources import ResourceManager
from gossamer.store.memory import MemoryStore
from gossamer.tokens import DATAPLANE
from proxy.context import OutboundListener
from tests.builders import dataplane_doc
from tests.waiting import eventually
from zone_cp.agent_session import AgentSession
from zone_cp.agents import AgentRegistry
from zone_cp.mailbox import Mailbox
from zone_cp.mesh_dns import MeshVip, VipView, declared_ports, dns_table, mesh_vips, vip_outbounds
from zone_cp.mesh_state import MeshState
from zone_cp.updates import DnsTable, TrustBundle
from zone_cp.vip_controller import DnsPublisher, VipAllocator, push
from zone_cp.vips import parse_cidr


def dataplane(name: str, service: str, service_port: int | None = 8080, port: int = 18080,
              labels: dict[str, str] | None = None,
              outbound: list[dict[str, Any]] | None = None, mesh: str = "default"
              ) -> dict[str, Any]:
    return dataplane_doc(name, service, mesh=mesh, address="10.0.0.1", port=port,
                         service_port=service_port, labels=labels or {},
                         outbounds=outbound or [])


def vip(service: str, ip: str, mesh: str = "default") -> Resource:
    return Resource("VirtualIP", service.lower(), VirtualIPSpec(ip=ip), mesh=mesh,
                    labels={SERVICE_LABEL: service})


# -- pure: ports, table, listeners ---------------------------------------------------------

def test_ports_are_80_and_each_declared_application_port() -> None:
    dps = [parse_document(d) for d in (
        dataplane("b1", "backend", 8080), dataplane("b2", "backend", 9090),
        dataplane("d1", "db", None, port=5432))]  # no servicePort: the inbound port
    ports = declared_ports(dps)
    assert ports == {"backend": {8080, 9090}, "db": {5432}}
    vips = mesh_vips([vip("db", "240.0.0.2"), vip("backend", "240.0.0.1"),
                      vip("remote", "240.0.0.3")], ports)
    assert vips == (MeshVip("backend", "240.0.0.1", (80, 8080, 9090)),
                    MeshVip("db", "240.0.0.2", (80, 5432)),
                    MeshVip("remote", "240.0.0.3", (80,)))


def test_the_dns_table_names_each_service_dot_mesh() -> None:
    table = dns_table([MeshVip("web", "240.0.0.2"),
                       MeshVip("backend", "240.0.0.1", (80, 8080))])
    assert [(e.name, list(e.ips), list(e.ports)) for e in table.entries] == [
        ("backend.mesh", ["240.0.0.1"], [80, 8080]), ("web.mesh", ["240.0.0.2"], [80])]
    assert table.version and dns_table([MeshVip("backend", "240.0.0.1", (80, 8080)),
                                        MeshVip("web", "240.0.0.2")]).version == table.version
    assert dns_table([MeshVip("web", "240.0.0.9")]).version != table.version


def test_names_that_cannot_be_dns_names_are_left_out_and_case_collisions_go_to_the_first(
        ) -> None:
    table = dns_table([MeshVip("Backend", "240.0.0.1"), MeshVip("backend", "240.0.0.2"),
                       MeshVip("a:b", "240.0.0.3"), MeshVip("Kuma_svc_80", "240.0.0.4")])
    assert {e.name: list(e.ips) for e in table.entries} == {
        "backend.mesh": ["240.0.0.1"], "kuma_svc_80.mesh": ["240.0.0.4"]}


def test_an_empty_mesh_has_an_empty_table_with_a_version() -> None:
    table = dns_table([])
    assert not table.entries and table.version


def test_vip_listeners_by_default_but_not_for_a_dataplane_that_opts_out() -> None:
    vips = (MeshVip("backend", "240.0.0.1", (80, 8080)), MeshVip("web", "240.0.0.2"))
    out = parse_document(dataplane("w1", "web", labels={VIP_OUTBOUNDS_LABEL: "false"}))
    assert vip_outbounds(vips, out) == ()
    for labels in ({}, {VIP_OUTBOUNDS_LABEL: "true"}):
        plain = parse_document(dataplane(
            "w1", "web", labels=labels,
            outbound=[{"port": 8080, "address": "240.0.0.1",
                       "tags": {"gossamer.io/service": "backend"}}]))
        assert vip_outbounds(vips, plain) == (
            OutboundListener("backend", 80, "240.0.0.1"),  # 8080 is an explicit outbound
            OutboundListener("web", 80, "240.0.0.2"))


# -- the allocator task and the publisher over a memory store ----------------------------

@dataclass
class Zone:
    manager: ResourceManager
    state: MeshState
    agents: AgentRegistry
    clock: list[float]

    def allocator(self, cidr: str = "240.0.0.0/4", grace: float = 60) -> VipAllocator:
        return VipAllocator(self.state, self.manager, parse_cidr(cidr), grace=grace,
                            clock=lambda: self.clock[0])

    async def vips(self, mesh: str = "default") -> dict[str, str]:
        page = await self.manager.list("VirtualIP", mesh)
        return {r.labels[SERVICE_LABEL]: VirtualIPSpec.model_validate(r.spec).ip
                for r in page.items}

    async def apply(self, doc: dict[str, Any]) -> None:
        await self.manager.apply(parse_document(doc))

    async def settled(self) -> None:
        """Until the state has seen every write to the store."""
        await eventually(lambda: self.state.generation > 0, 5, "the state to load the store")
        for _ in range(50):
            await asyncio.sleep(0)


@contextlib.asynccontextmanager
async def zone_on(store: MemoryStore) -> AsyncIterator[Zone]:
    manager = ResourceManager(store)
    state = MeshState(store, "west")
    task = asyncio.create_task(state.run())
    try:
        yield Zone(manager, state, AgentRegistry(manager, "west"), [0.0])
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
async def store() -> MemoryStore:
    store = MemoryStore()
    await bootstrap(ResourceManager(store))
    return store


async def test_the_allocator_gives_every_service_a_vip_and_keeps_it_across_a_restart(
        store: MemoryStore) -> None:
    async with zone_on(store) as zone:
        await zone.apply(dataplane("b1", "backend"))
        await zone.apply(dataplane("w1", "web"))
        await zone.apply({"type": "ZoneIngress", "name": "east-ingress",
                          "labels": {"gossamer.io/zone": "east"},
                          "networking": {"address": "192.168.1.1", "port": 10001},
                          "availableServices": [{"mesh": "default", "instances": 2,
                                                 "tags": {"gossamer.io/service": "db"}}]})
        await zone.settled()
        await zone.allocator().reconcile()
        first = await zone.vips()
        assert first == {"backend": "240.0.0.1", "db": "240.0.0.2", "web": "240.0.0.3"}
    async with zone_on(store) as zone:  # a new process on the same store
        await zone.apply(dataplane("a1", "alpha"))
        await zone.settled()
        await zone.allocator().reconcile()
        assert await zone.vips() == {**first, "alpha": "240.0.0.4"}


async def test_the_allocator_follows_state_changes_without_polling(
        store: MemoryStore) -> None:
    async with zone_on(store) as zone:
        allocator = zone.allocator()
        task = asyncio.create_task(allocator.run())
        try:
            await zone.apply(dataplane("b1", "backend"))
            await eventually(lambda: zone.state.get("VirtualIP", "backend", "default"),
                             5, "backend's VirtualIP")
            await zone.settled()
            rounds = allocator.rounds
            await asyncio.sleep(0.2)
            assert allocator.rounds == rounds, "the allocator ran with nothing changed"
            # A VirtualIP deleted by hand comes back (the same address: the highest in
            # use was the one deleted).
            await zone.manager.delete("VirtualIP", "backend", "default")
            await eventually(lambda: allocator.rounds > rounds + 1, 5, "the allocator to run again")
            assert await zone.vips() == {"backend": "240.0.0.1"}
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_a_gone_service_keeps_its_vip_for_the_grace_period(store: MemoryStore) -> None:
    async with zone_on(store) as zone:
        allocator = zone.allocator(grace=60)
        await zone.apply(dataplane("b1", "backend"))
        await zone.apply(dataplane("w1", "web"))
        await zone.settled()
        await allocator.reconcile()
        await zone.manager.delete("Dataplane", "b1", "default")
        await zone.settled()
        zone.clock[0] = 100.0
        await allocator.reconcile()
        assert "backend" in await zone.vips()
        zone.clock[0] = 159.0
        await allocator.reconcile()
        assert "backend" in await zone.vips()
        zone.clock[0] = 160.0
        await allocator.reconcile()
        assert await zone.vips() == {"web": "240.0.0.2"}
        # The next service gets the address after the highest in use: backend's .1 waits.
        await zone.apply(dataplane("n1", "new"))
        await zone.settled()
        await allocator.reconcile()
        assert (await zone.vips())["new"] == "240.0.0.3"


async def test_an_exhausted_range_allocates_what_fits_and_says_so(
        store: MemoryStore, caplog: pytest.LogCaptureFixture) -> None:
    async with zone_on(store) as zone:
        for i in range(4):
            await zone.apply(dataplane(f"s{i}", f"s{i}"))
        await zone.settled()
        await zone.allocator("10.0.0.0/30").reconcile()
        assert await zone.vips() == {}  # allocate() answers all or nothing
        assert "no free virtual IP left in 10.0.0.0/30" in caplog.text


EAST_INGRESS = {"type": "ZoneIngress", "name": "east-ingress",
                "labels": {"gossamer.io/zone": "east"},
                "networking": {"address": "192.168.1.1", "port": 10001},
                "availableServices": [
                    {"mesh": "default", "instances": 2, "tags": {"gossamer.io/service": "db"}},
                    {"mesh": "default", "instances": 1,
                     "tags": {"gossamer.io/service": "backend"}}]}


async def pinned_vips(zone: Zone) -> dict[tuple[str, str], str]:
    page = await zone.manager.list("VirtualIP", "default")
    return {(r.labels[SERVICE_LABEL], r.labels.get("gossamer.io/zone", "")):
            VirtualIPSpec.model_validate(r.spec).ip for r in page.items}


async def test_zone_pinned_names_get_a_vip_per_serving_zone_when_the_mesh_asks(
        store: MemoryStore) -> None:
    async with zone_on(store) as zone:  # zone "west"
        await zone.apply(dataplane("b1", "backend"))
        await zone.apply(EAST_INGRESS)
        await zone.settled()
        allocator = zone.allocator(grace=60)
        await allocator.reconcile()
        assert await pinned_vips(zone) == {("backend", ""): "240.0.0.1", ("db", ""): "240.0.0.2"}

        await zone.apply({"type": "Mesh", "name": "default",
                          "routing": {"zonePinnedNames": True}})
        await zone.settled()
        await allocator.reconcile()
        vips = await pinned_vips(zone)
        assert vips == {("backend", ""): "240.0.0.1", ("db", ""): "240.0.0.2",
                        ("backend", "east"): "240.0.0.3", ("backend", "west"): "240.0.0.4",
                        ("db", "east"): "240.0.0.5"}
        names = {r.name for r in (await zone.manager.list("VirtualIP", "default")).items}
        assert {"backend", "db"} <= names and len(names) == 5  # pinned: derived names

        await zone.settled()
        table = dns_table(VipView(zone.state).of("default"))
        assert {e.name: list(e.ips) for e in table.entries} == {
            "backend.mesh": ["240.0.0.1"], "db.mesh": ["240.0.0.2"],
            "backend.svc.east.mesh": ["240.0.0.3"], "backend.svc.west.mesh": ["240.0.0.4"],
            "db.svc.east.mesh": ["240.0.0.5"]}
        web = parse_document(dataplane("w1", "web"))
        pinned = [ob for ob in vip_outbounds(VipView(zone.state).of("default"), web)
                  if ob.zone]
        assert {(ob.service, ob.zone, ob.address) for ob in pinned} == {
            ("backend", "east", "240.0.0.3"), ("backend", "west", "240.0.0.4"),
            ("db", "east", "240.0.0.5")}

        # Turned off again: the pinned VIPs go after the grace period, like a gone
        # service's, and the any-zone ones stay.
        await zone.apply({"type": "Mesh", "name": "default"})
        await zone.settled()
        zone.clock[0] = 100.0
        await allocator.reconcile()
        assert len(await pinned_vips(zone)) == 5
        zone.clock[0] = 160.0
        await allocator.reconcile()
        assert await pinned_vips(zone) == {("backend", ""): "240.0.0.1",
                                           ("db", ""): "240.0.0.2"}


def test_a_pinned_name_sorts_before_a_service_spelled_like_it() -> None:
    # "backend.svc.east" is a legal service name (tag values allow dots); the pinned
    # name of backend in east takes the DNS name, the first in (service, zone) order.
    table = dns_table([MeshVip("backend.svc.east", "240.0.0.9"),
                       MeshVip("backend", "240.0.0.3", zone="east")])
    assert {e.name: list(e.ips) for e in table.entries} == {
        "backend.svc.east.mesh": ["240.0.0.3"]}


async def session_of(zone: Zone, name: str, service: str, mesh: str = "default"
                     ) -> AgentSession:
    token, _ = await TokenAuthority(zone.manager, DATAPLANE, mesh).issue(service, 3600)
    return await zone.agents.register(dataplane(name, service, mesh=mesh), token, 0.0)


def tables(session: AgentSession) -> list[dict[str, list[str]]]:
    out = []
    while not session.updates.empty():
        message = session.updates.get_nowait()
        assert isinstance(message, DnsTable)
        out.append({e.name: list(e.ips) for e in message.entries})
    return out


async def test_the_publisher_sends_each_session_its_mesh_table_on_registration_and_change(
        store: MemoryStore) -> None:
    async with zone_on(store) as zone:
        await zone.apply({"type": "Mesh", "name": "other"})
        DnsPublisher(zone.state, zone.agents, VipView(zone.state))
        task = asyncio.create_task(zone.allocator().run())
        try:
            web = await session_of(zone, "w1", "web")
            await eventually(lambda: zone.state.get("VirtualIP", "web", "default"),
                             5, "web's VirtualIP")
            await zone.settled()
            assert tables(web)[-1] == {"web.mesh": ["240.0.0.1"]}
            other = await session_of(zone, "o1", "lonely", mesh="other")
            await eventually(lambda: zone.state.get("VirtualIP", "lonely", "other"),
                             5, "lonely's VirtualIP")
            await zone.settled()
            assert tables(other)[-1] == {"lonely.mesh": ["240.0.0.1"]}  # its mesh only
            assert tables(web) == []  # nothing changed in web's mesh
            await zone.apply(dataplane("b1", "backend"))
            await eventually(lambda: zone.state.get("VirtualIP", "backend", "default"),
                             5, "backend's VirtualIP")
            await zone.settled()
            assert tables(web) == [{"web.mesh": ["240.0.0.1"], "backend.mesh": ["240.0.0.2"]}]
            assert tables(other) == []
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def test_a_session_holds_at_most_one_pending_table() -> None:
    queue = Mailbox()
    session = AgentSession("default", "w1", None, None, 0.0, updates=queue)  # type: ignore[arg-type]
    push(session, DnsTable("1", ()))
    queue.put_nowait(TrustBundle(pem=b"x"))
    push(session, DnsTable("2", ()))
    pending = [queue.get_nowait() for _ in range(queue.qsize())]
    assert [type(m) for m in pending] == [TrustBundle, DnsTable]
    assert isinstance(pending[-1], DnsTable) and pending[-1].version == "2"

