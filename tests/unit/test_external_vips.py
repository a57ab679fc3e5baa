"""A MeshExternalService's VIP and name: the allocator gives one to each external service
the zone may reach (a key space of its own), the DNS table names it
``<name>.extsvc.mesh`` with its ``match.port`` (and 80 for HTTP), and sidecars get
external VIP outbounds; changes and removals follow without polling."""

from __future__ import annotations

from typing import Any

from gossamer.model.labels import EXTERNAL_SERVICE_LABEL
from gossamer.model.registry import parse_document
from gossamer.model.virtualip import SERVICE_LABEL, VirtualIPSpec, key_of
from gossamer.store.memory import MemoryStore
from proxy.context import OutboundListener
from tests.unit.test_mesh_dns import Zone, dataplane, store, zone_on
from zone_cp.mesh_dns import MeshVip, VipView, dns_table, vip_outbounds

__all__ = ["store"]  # the fixture


def external(name: str, port: int = 80, protocol: str = "http",
             zones: list[str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"match": {"port": port, "protocol": protocol},
                            "endpoints": [{"address": "203.0.113.7", "port": 443}]}
    if zones is not None:
        spec["zones"] = zones
    return {"type": "MeshExternalService", "name": name, "mesh": "default", "spec": spec}


async def vips_by_key(zone: Zone) -> dict[str, tuple[str, dict[str, str]]]:
    page = await zone.manager.list("VirtualIP", "default")
    return {key_of(r): (VirtualIPSpec.model_validate(r.spec).ip, dict(r.labels))
            for r in page.items}


async def test_each_reachable_external_service_gets_a_vip_a_name_and_outbounds(
        store: MemoryStore) -> None:
    async with zone_on(store) as zone:  # zone "west"
        await zone.apply(dataplane("b1", "httpbin"))  # a service spelled like one of them
        await zone.apply(external("httpbin"))
        await zone.apply(external("pg", port=5432, protocol="tcp", zones=["west"]))
        await zone.apply(external("east-only", zones=["east"]))
        await zone.settled()
        await zone.allocator().reconcile()
        vips = await vips_by_key(zone)
        assert vips == {
            "extsvc@httpbin": ("240.0.0.1", {EXTERNAL_SERVICE_LABEL: "httpbin"}),
            "extsvc@pg": ("240.0.0.2", {EXTERNAL_SERVICE_LABEL: "pg"}),
            "httpbin": ("240.0.0.3", {SERVICE_LABEL: "httpbin"})}

        await zone.settled()
        view = VipView(zone.state).of("default")
        table = dns_table(view)
        assert {e.name: (list(e.ips), list(e.ports)) for e in table.entries} == {
            "httpbin.extsvc.mesh": (["240.0.0.1"], [80]),
            "pg.extsvc.mesh": (["240.0.0.2"], [5432]),  # tcp: no port 80
            "httpbin.mesh": (["240.0.0.3"], [80, 8080])}
        web = parse_document(dataplane("w1", "web"))
        assert [ob for ob in vip_outbounds(view, web) if ob.external] == [
            OutboundListener("extsvc@httpbin", 80, "240.0.0.1", external=True),
            OutboundListener("extsvc@pg", 5432, "240.0.0.2", external=True)]


async def test_a_changed_port_and_a_removal_follow(store: MemoryStore) -> None:
    async with zone_on(store) as zone:
        allocator = zone.allocator(grace=60)
        await zone.apply(external("api", port=8080))
        await zone.settled()
        await allocator.reconcile()
        assert (await vips_by_key(zone))["extsvc@api"][0] == "240.0.0.1"
        await zone.apply(external("api", port=8443))
        await zone.settled()
        table = dns_table(VipView(zone.state).of("default"))
        assert [(e.name, list(e.ports)) for e in table.entries] == [
            ("api.extsvc.mesh", [80, 8443])]
        # Removed (or no longer allowed here): released after the grace period.
        await zone.apply(external("api", port=8443, zones=["east"]))
        await zone.settled()
        await allocator.reconcile()
        assert "extsvc@api" in await vips_by_key(zone)
        zone.clock[0] = 61.0
        await allocator.reconcile()
        assert await vips_by_key(zone) == {}


def test_the_external_service_keeps_its_name_from_a_service_spelled_like_it() -> None:
    table = dns_table([MeshVip("httpbin.extsvc", "240.0.0.1"),
                       MeshVip("extsvc@httpbin", "240.0.0.2")])
    assert [(e.name, list(e.ips)) for e in table.entries] == [
        ("httpbin.extsvc.mesh", ["240.0.0.2"])]
    table = dns_table([MeshVip("a.extsvc", "240.0.0.1"), MeshVip("extsvc@a", "240.0.0.2")])
    assert [(e.name, list(e.ips)) for e in table.entries] == [("a.extsvc.mesh", ["240.0.0.2"])]
