"""A MeshExternalService applied at the global reaches every zone over the real sync (gRPC,
TLS), with the Secret its CA comes from; a VIP and ``<name>.extsvc.mesh`` exist only in
the zones it allows; a standalone zone takes it directly, and reads its CA once the
Secret exists."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from global_cp.app import GlobalControlPlane
from gossamer.model.labels import EXTERNAL_SERVICE_LABEL
from gossamer.model.registry import parse_document
from gossamer.resources import ResourceManager
from gossamer.settings import ZoneSettings
from tests.builders import dataplane_doc
from tests.cluster import start_global, start_zone
from tests.unit.envoy_external_inputs import CA_PEM
from tests.waiting import eventually
from zone_cp.app import ZoneControlPlane
from zone_cp.mesh_dns import VipView, dns_table


def external(name: str, zones: list[str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "match": {"port": 443, "protocol": "tcp"},
        "endpoints": [{"address": "api.example.com", "port": 443}],
        "tls": {"enabled": True, "verification": {"caCert": {"secretRef": "api-ca"}}}}
    if zones is not None:
        spec["zones"] = zones
    return {"type": "MeshExternalService", "name": name, "mesh": "default", "spec": spec}


SECRET = {"type": "Secret", "name": "api-ca", "mesh": "default",
          "data": base64.b64encode(CA_PEM).decode()}


@pytest.fixture
async def planes(tmp_path: Path) -> AsyncIterator[tuple[GlobalControlPlane,
                                                        list[ZoneControlPlane]]]:
    global_cp = await start_global(tmp_path / "global")
    zones = [await start_zone(global_cp, name, tmp_path / f"zone-{name}")
             for name in ("east", "west")]
    yield global_cp, zones
    for zone in zones:
        await zone.stop()
    await global_cp.stop()


def external_names(zone: ZoneControlPlane) -> set[str]:
    return {e.name for e in dns_table(VipView(zone.state).of("default")).entries
            if e.name.endswith(".extsvc.mesh")}


async def test_it_flows_to_the_zones_and_gets_a_name_where_allowed(
        planes: tuple[GlobalControlPlane, list[ZoneControlPlane]]) -> None:
    global_cp, (east, west) = planes
    assert global_cp.store is not None
    manager = ResourceManager(global_cp.store)
    await eventually(lambda: all(z.state.get("Mesh", "default") for z in (east, west)),
                     what="the default mesh in both zones")
    for doc in (SECRET, external("west-only", zones=["west"]), external("everywhere")):
        await manager.apply(parse_document(doc))
    await eventually(lambda: all(z.state.get("MeshExternalService", n, "default")
                                 and z.state.get("Secret", "api-ca", "default")
                                 for z in (east, west) for n in ("west-only", "everywhere")),
                     what="both external services and the Secret in both zones")
    await eventually(lambda: external_names(west) == {"west-only.extsvc.mesh",
                                                      "everywhere.extsvc.mesh"},
                     what="west's names")
    await eventually(lambda: external_names(east) == {"everywhere.extsvc.mesh"},
                     what="east's names")
    labelled = {r.labels.get(EXTERNAL_SERVICE_LABEL)
                for r in east.state.of_kind("VirtualIP", "default")}
    assert "everywhere" in labelled and "west-only" not in labelled
    service = west.state.shared_services("default")["extsvc@west-only"]
    assert service.external is not None and service.external.tls is not None
    assert service.external.tls.ca_pem == CA_PEM and not service.external.problem


async def test_a_standalone_zone_takes_it_directly(tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    zone = ZoneControlPlane(ZoneSettings(zone="solo", data_dir=tmp_path / "solo",
                                         api_addr="127.0.0.1:0", xds_addr="127.0.0.1:0",
                                         store="sqlite"))
    await zone.start()
    try:
        await zone.manager.apply(parse_document(external("api")))
        await eventually(lambda: external_names(zone) == {"api.extsvc.mesh"},
                         what="the standalone zone's name")
        service = zone.state.shared_services("default")["extsvc@api"]
        assert service.external is not None
        assert service.external.problem == "its caCert Secret 'api-ca' does not exist"
        # Said once, not again on every rebuild of the mesh's services.
        await zone.manager.apply(parse_document(dataplane_doc("b-1", "backend")))
        await eventually(lambda: "backend" in zone.state.shared_services("default"),
                         what="the mesh's services rebuilt")
        warnings = [r.getMessage() for r in caplog.records if "has no endpoints" in r.getMessage()]
        assert warnings == ["mesh default: MeshExternalService api has no endpoints: its "
                            "caCert Secret 'api-ca' does not exist"]
        await zone.manager.apply(parse_document(SECRET))
        await eventually(lambda: not zone.state.shared_services("default")[
            "extsvc@api"].external.problem, what="the CA read once the Secret exists")
    finally:
        await zone.stop()
