"""``GET /_check`` at the global: the facts ``gossamer check`` judges, gathered in one call.

Read-only. For each zone (known as a ``Zone`` or from its streams): enabled, online, the
last stream error, its latest ``ZoneHealth`` report with the global's time of receipt
(the store's modification time: the clock skew is that minus the zone's ``reportedAt``)
and whether the zone token the report names is revoked here. Beside them: every
``ZoneIngress`` (which zone has one), ``ZoneEgress`` (which zone has one for the meshes
routed through one), each mesh's CA backend checked live
(``authority.ca_health``), the zones' certificate issuance errors (``ZoneTrustStatus``)
and their intermediate CAs; this replica's leader election (``leader``). The judging is
the client's (``cli.check_rules``), so the same facts serve the GUI or any other tool.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter

from authority.ca_health import backend_health
from global_cp.certificate_routes import zone_certificate_overview
from global_cp.insights import ZoneInsight
from global_cp.zone_routes import InsightView
from gossamer.errors import NotFound
from gossamer.model.base import Resource
from gossamer.model.labels import ZONE_LABEL
from gossamer.model.mesh import MeshSpec
from gossamer.model.registry import to_document
from gossamer.model.tokenrevocation import revocation_name
from gossamer.model.zone import is_enabled
from gossamer.model.zoneegress import ZoneEgressSpec
from gossamer.model.zonehealth import ZoneHealthSpec
from gossamer.model.zoneingress import ZoneIngressSpec
from gossamer.model.zonetrust import ZoneTrustStatusSpec
from gossamer.resources import ResourceManager
from gossamer.tokens import ZONE


async def _revoked(manager: ResourceManager, token_id: str) -> bool:
    if not token_id:
        return False
    try:
        await manager.get("TokenRevocation", revocation_name(ZONE, "", token_id))
    except NotFound:
        return False
    return True


async def _reports(manager: ResourceManager) -> dict[str, Resource]:
    out = {}
    for res in (await manager.list("ZoneHealth")).items:
        if isinstance(res.spec, ZoneHealthSpec):
            out[res.labels.get(ZONE_LABEL, res.spec.zone)] = res
    return out


async def _zones(manager: ResourceManager, view: InsightView) -> list[dict[str, Any]]:
    records = {z.name: z for z in (await manager.list("Zone")).items}
    reports = await _reports(manager)
    insights = await view()
    names = sorted({*records, *insights, *reports})
    out = []
    for name in names:
        insight = insights.get(name) or ZoneInsight(name)
        report = reports.get(name)
        spec = report.spec if report is not None else None
        assert spec is None or isinstance(spec, ZoneHealthSpec)
        received = report.meta.modification_time if report is not None else None
        out.append({
            "name": name, "enabled": name not in records or is_enabled(records[name]),
            "online": insight.online, "lastError": insight.last_error,
            "report": to_document(report)["spec"] if report is not None else None,
            "receivedAt": received.isoformat() if received is not None else None,
            "tokenRevoked": spec is not None and await _revoked(manager, spec.token_id)})
    return out


def _ingresses(items: list[Resource]) -> list[dict[str, Any]]:
    out = []
    for res in items:
        if isinstance(res.spec, ZoneIngressSpec):
            net = res.spec.networking
            out.append({"zone": res.labels.get(ZONE_LABEL) or res.spec.zone or "",
                        "name": res.name,
                        "address": str(net.advertised_address or net.address),
                        "port": net.advertised_port or net.port})
    return out


def _egresses(items: list[Resource]) -> list[dict[str, Any]]:
    return [{"zone": r.labels.get(ZONE_LABEL) or r.spec.zone or "", "meshes": r.spec.meshes}
            for r in items if isinstance(r.spec, ZoneEgressSpec)]


def _egress_meshes(items: list[Resource]) -> list[str]:
    """The meshes whose sidecars go through their zone's egress (``routing.zoneEgress``)."""
    return sorted(r.name for r in items if isinstance(r.spec, MeshSpec)
                  and (r.spec.egress.external_services or r.spec.egress.cross_zone))


def _issuance(items: list[Resource]) -> list[dict[str, Any]]:
    return [{"zone": r.spec.zone, "mesh": r.spec.mesh, "error": r.spec.issuance_error}
            for r in items if isinstance(r.spec, ZoneTrustStatusSpec)]


def check_router(manager: ResourceManager, view: InsightView,
                 leader: Callable[[], dict[str, object]] | None = None) -> APIRouter:
    """``leader``: this replica's election status (role, holder, epoch), shown as is."""
    router = APIRouter(tags=["Check"])

    @router.get("/_check", summary="The facts `gossamer check` judges (zones, ingresses, "
                                   "CA backends, certificates)")
    async def facts() -> dict[str, Any]:
        now = dt.datetime.now(dt.UTC)
        certs = (await manager.list("ZoneCertificate")).items
        return {
            "mode": "global", "now": now.isoformat(),
            "leader": leader() if leader is not None else None,
            "zones": await _zones(manager, view),
            "ingresses": _ingresses((await manager.list("ZoneIngress")).items),
            "egresses": _egresses((await manager.list("ZoneEgress")).items),
            "egressMeshes": _egress_meshes((await manager.list("Mesh")).items),
            "caBackends": await backend_health(manager),
            "issuance": _issuance((await manager.list("ZoneTrustStatus")).items),
            "intermediates": [zone_certificate_overview(r, now) for r in certs],
        }

    return router
