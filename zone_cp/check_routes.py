"""``GET /_check`` at a zone CP: the facts ``gossamer check`` judges, in the global's shape.

The zone gathers its report live (``zone_cp.health_report.gather``: it dials the other
zones' ingresses now) and lists itself as the one zone, online when it is standalone or
its sync link is up. A standalone zone owns its meshes' roots, so it checks their CA
backends too; a federated one leaves that to the global and reports only its own
issuance errors (``ZoneCa``). There is no clock to compare with here: the clock skew is
measured at the global only (``receivedAt`` is null).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter

from authority.ca_health import backend_health
from gossamer.model.base import Resource
from gossamer.model.registry import to_document
from gossamer.model.zonetrust import ZoneTrustStatusSpec
from gossamer.settings import ZoneSettings
from zone_cp.health_report import gather
from zone_cp.parts import ZoneParts


def check_router(settings: ZoneSettings, parts: ZoneParts) -> APIRouter:
    router = APIRouter(tags=["Check"])

    @router.get("/_check", summary="The facts `gossamer check` judges, as this zone sees them")
    async def facts() -> dict[str, Any]:
        report = await gather(settings.zone, parts.manager, parts.agents, parts.ads.insights,
                              settings.vip_cidr, settings.token_file,
                              lambda: parts.state.of_kind("Dataplane"))
        sync = parts.sync
        zone = {"name": settings.zone, "enabled": True,
                "online": sync is None or sync.status.connected,
                "lastError": "" if sync is None else sync.status.last_error,
                "report": to_document(Resource(type="ZoneHealth", name=settings.zone,
                                               spec=report))["spec"],
                "receivedAt": None, "tokenRevoked": False}
        issuance = [{"zone": settings.zone, "mesh": r.spec.mesh, "error": r.spec.issuance_error}
                    for r in (await parts.manager.list("ZoneTrustStatus")).items
                    if isinstance(r.spec, ZoneTrustStatusSpec)]
        return {"mode": "standalone" if sync is None else "zone",
                "now": dt.datetime.now(dt.UTC).isoformat(), "zones": [zone],
                "ingresses": None,
                "caBackends": await backend_health(parts.manager) if sync is None else [],
                "issuance": issuance, "intermediates": []}

    return router
