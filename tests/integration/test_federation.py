"""A global and zones over real gRPC with TLS: policies flow down, dataplanes flow up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from global_cp.app import GlobalControlPlane
from gossamer.errors import Conflict, NotFound
from gossamer.model.labels import DISPLAY_NAME_LABEL, ORIGIN_LABEL, ZONE_LABEL
from gossamer.model.registry import parse_document
from gossamer.resources import ResourceManager
from gossamer.store.base import ListQuery
from sync.applier import zone_scoped_name
from tests.builders import dataplane_doc
from tests.cluster import start_global, start_zone
from tests.waiting import eventually
from zone_cp.app import ZoneControlPlane

TIMEOUT = {"type": "MeshTimeout", "name": "slow", "mesh": "default",
           "spec": {"to": [{"targetRef": {"kind": "MeshService", "name": "backend"},
                            "default": {"http": {"requestTimeout": "5s"}}}]}}


@pytest.fixture
async def global_cp(tmp_path: Path) -> AsyncIterator[GlobalControlPlane]:
    cp = await start_global(tmp_path / "global")
    yield cp
    await cp.stop()


@pytest.fixture
async def zones(tmp_path: Path, global_cp: GlobalControlPlane) -> AsyncIterator[
        list[ZoneControlPlane]]:
    started = [await start_zone(global_cp, name, tmp_path / f"zone-{name}")
               for name in ("east", "west", "north")]
    yield started
    for zone in started:
        await zone.stop()


async def has(cp: GlobalControlPlane | ZoneControlPlane, kind: str, name: str,
              mesh: str = "") -> object:
    assert cp.store is not None
    try:
        return await cp.store.get(kind, name, mesh)
    except NotFound:
        return None


async def test_policies_flow_to_every_zone(global_cp: GlobalControlPlane,
                                           zones: list[ZoneControlPlane]) -> None:
    assert global_cp.store is not None
    manager = ResourceManager(global_cp.store)
    for zone in zones:
        await eventually(lambda z=zone: has(z, "Mesh", "default"), what="default mesh")
    await manager.apply(parse_document(TIMEOUT))
    for zone in zones:
        res = await eventually(lambda z=zone: has(z, "MeshTimeout", "slow", "default"))
        assert res.labels[ORIGIN_LABEL] == "global"  # type: ignore[attr-defined]

    changed = {**TIMEOUT, "spec": {"to": [{"targetRef": {"kind": "MeshService",
                                                        "name": "backend"},
                                          "default": {"http": {"requestTimeout": "9s"}}}]}}
    await manager.apply(parse_document(changed))

    async def updated(zone: ZoneControlPlane) -> bool:
        res = await has(zone, "MeshTimeout", "slow", "default")
        return res is not None and "9s" in str(res.spec)  # type: ignore[attr-defined]

    for zone in zones:
        await eventually(lambda z=zone: updated(z), what="update in " + zone.settings.zone)

    await manager.delete("MeshTimeout", "slow", "default")
    for zone in zones:
        await eventually(lambda z=zone: _absent(z, "MeshTimeout", "slow", "default"))


async def _absent(cp: ZoneControlPlane, kind: str, name: str, mesh: str) -> bool:
    return await has(cp, kind, name, mesh) is None


async def test_dataplanes_flow_to_the_global_with_zone_labels(
        global_cp: GlobalControlPlane, zones: list[ZoneControlPlane]) -> None:
    east, west, _ = zones
    await eventually(lambda: has(east, "Mesh", "default"))
    await eventually(lambda: has(west, "Mesh", "default"))
    # The same dataplane name in two zones: two resources at the global.
    await east.manager.apply(parse_document(dataplane_doc("backend-1")))
    await west.manager.apply(parse_document(dataplane_doc("backend-1", service="web")))
    assert global_cp.store is not None
    for zone in ("east", "west"):
        name = zone_scoped_name(zone, "default", "backend-1")
        res = await eventually(lambda n=name: has(global_cp, "Dataplane", n, "default"))
        assert res.labels[ZONE_LABEL] == zone  # type: ignore[attr-defined]
        assert res.labels[ORIGIN_LABEL] == "zone"  # type: ignore[attr-defined]
        assert res.labels[DISPLAY_NAME_LABEL] == "backend-1"  # type: ignore[attr-defined]
    # Zone dataplanes never flow back down to other zones.
    page = await west.store.list(ListQuery("Dataplane"))  # type: ignore[union-attr]
    assert [r.name for r in page.items] == ["backend-1"]

    await east.manager.delete("Dataplane", "backend-1", "default")
    gone = zone_scoped_name("east", "default", "backend-1")
    await eventually(lambda: _absent(global_cp, "Dataplane", gone, "default"))  # type: ignore[arg-type]
    assert await has(global_cp, "Dataplane", zone_scoped_name("west", "default", "backend-1"),
                     "default")


async def test_zone_api_refuses_writes_to_global_owned_kinds(
        global_cp: GlobalControlPlane, zones: list[ZoneControlPlane]) -> None:
    import httpx

    east = zones[0]
    await eventually(lambda: has(east, "Mesh", "default"))
    async with httpx.AsyncClient(base_url=east.api_url,
                                 headers={"Authorization": f"Bearer {east.admin_token}"}) as c:
        r = await c.put("/meshes/default/meshtimeouts/slow", json=TIMEOUT)
        assert r.status_code == 409
        assert "owned by the global" in r.json()["detail"]
        r = await c.put("/meshes/default/dataplanes/backend-1", json=dataplane_doc("backend-1"))
        assert r.status_code == 201, r.text
        r = await c.get("/meshes/default")
        assert r.status_code == 200
    with pytest.raises(Conflict):
        from gossamer.model.registry import REGISTRY
        from zone_cp.guard import zone_write_guard
        zone_write_guard(True)(REGISTRY.get("Mesh"), None)


async def test_zone_record_created_and_insights_online(
        global_cp: GlobalControlPlane, zones: list[ZoneControlPlane]) -> None:
    for zone in zones:
        await eventually(lambda z=zone: has(global_cp, "Zone", z.settings.zone))
    for name in ("east", "west", "north"):
        await eventually(lambda n=name: global_cp.insights.get(n).streams == 2,
                         what=f"{name} online")
        overview = global_cp.insights.get(name).to_json()
        assert overview["status"] == "Online"


async def test_inspect_zones_cli(global_cp: GlobalControlPlane,
                                 zones: list[ZoneControlPlane], tmp_path: Path) -> None:
    from click.testing import CliRunner

    from cli.main import main

    for name in ("east", "west", "north"):
        await eventually(lambda n=name: global_cp.insights.get(n).streams == 2)
    token = tmp_path / "admin-token"
    token.write_text(global_cp.admin_token)
    env = {"GOSSAMER_ADDRESS": global_cp.api_url, "GOSSAMER_TOKEN_FILE": str(token),
           "GOSSAMER_CONFIG": str(tmp_path / "cli.yaml")}

    async def listed_online() -> Any:
        # The API reads the stored insights: a replica's pass stores them within a second.
        result = await asyncio.to_thread(CliRunner().invoke, main, ["inspect", "zones"],
                                         env=env)
        assert result.exit_code == 0, result.output
        rows = [line.split() for line in result.output.splitlines()[1:]]
        return result if len(rows) == 3 and all(r[1] == "Online" for r in rows) else None

    result = await eventually(listed_online, what="every zone Online in inspect zones")
    lines = result.output.splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "CONNECTED", "LAST-UPDATE",
                                "SENT/ACKED/NACKED", "VERSION"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(rows) == {"east", "west", "north"}
    assert all(row[1] == "Online" for row in rows.values())
    assert all(row[-1] == "0.1.0" for row in rows.values())


async def test_zone_intermediates_from_the_global(global_cp: GlobalControlPlane,
                                                  zones: list[ZoneControlPlane]) -> None:
    from cryptography import x509

    from gossamer.pki.certs import new_csr, new_key, uri_sans
    from zone_cp.ca import workload_uris

    east, west, _ = zones
    signed = {}
    for zone in (east, west):
        await eventually(lambda z=zone: z.ca.issuer("default"), timeout=15,
                         what=f"intermediate in {zone.settings.zone}")
        signed[zone.settings.zone] = await zone.ca.sign("default",
                                                        workload_uris("default", "backend"),
                                                        new_csr(new_key(), "backend-1"))
    # Both zones chain to the one mesh root, through their own intermediates.
    roots = {s.trust_bundle_pem for s in signed.values()}
    assert len(roots) == 1
    root = x509.load_pem_x509_certificate(roots.pop())
    intermediates = set()
    for s in signed.values():
        leaf, inter = x509.load_pem_x509_certificates(s.chain_pem)
        leaf.verify_directly_issued_by(inter)
        inter.verify_directly_issued_by(root)
        assert uri_sans(leaf) == ["spiffe://default/backend"]
        intermediates.add(inter.subject.rfc4514_string())
    assert len(intermediates) == 2
    # The root key stays at the global; a zone holds only its own intermediate.
    for zone in (east, west):
        assert zone.store is not None
        secrets = (await zone.store.list(ListQuery("GlobalSecret"))).items
        assert not [s for s in secrets if s.name.startswith("ca-default")]
        certs = (await zone.store.list(ListQuery("ZoneCertificate"))).items
        assert [c.spec.zone for c in certs] == [zone.settings.zone]  # type: ignore[attr-defined]


async def test_inspect_services_at_the_global(global_cp: GlobalControlPlane,
                                              zones: list[ZoneControlPlane],
                                              tmp_path: Path) -> None:
    from click.testing import CliRunner

    from cli.main import main

    east = zones[0]
    await eventually(lambda: has(east, "Mesh", "default"))
    await east.manager.apply(parse_document(dataplane_doc("backend-1")))
    name = zone_scoped_name("east", "default", "backend-1")
    await eventually(lambda: has(global_cp, "Dataplane", name, "default"))
    token = tmp_path / "admin-token"
    token.write_text(global_cp.admin_token)
    env = {"GOSSAMER_ADDRESS": global_cp.api_url, "GOSSAMER_TOKEN_FILE": str(token),
           "GOSSAMER_CONFIG": str(tmp_path / "cli.yaml")}
    result = await asyncio.to_thread(CliRunner().invoke, main, ["inspect", "services"], env=env)
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines()[1:]]
    assert ["default", "backend", "east", "1", "tcp", "dataplanes"] in rows
