"""``/services/_overviews``: every service, where it runs and how many instances.

Built from the Dataplanes a control plane holds (a zone's own, or at the global every
zone's, labelled with their zone) and the ZoneIngresses other zones offer services
through, so the same route answers "where does backend run" at a zone and at the global.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter

from gossamer.model.base import Resource
from gossamer.model.dataplane import DataplaneSpec
from gossamer.model.labels import PROTOCOL_TAG, SERVICE_TAG, ZONE_LABEL
from gossamer.model.zoneingress import ZoneIngressSpec
from gossamer.resources import ResourceManager


def service_overviews(dataplanes: Iterable[Resource], ingresses: Iterable[Resource],
                      local_zone: str) -> list[dict[str, Any]]:
    """One row per (mesh, service, zone): instances and protocol; local rows first."""
    rows: dict[tuple[str, str, str], dict[str, Any]] = defaultdict(
        lambda: {"instances": 0, "protocol": "tcp", "via": "dataplanes"})
    for dp in dataplanes:
        if not isinstance(dp.spec, DataplaneSpec):
            continue
        zone = dp.labels.get(ZONE_LABEL, local_zone)
        for ib in dp.spec.networking.inbound:
            row = rows[(dp.mesh, ib.service, zone)]
            row["instances"] += 1
            row["protocol"] = ib.tags.get(PROTOCOL_TAG, "tcp")
    for zi in ingresses:
        spec = zi.spec
        if not isinstance(spec, ZoneIngressSpec):
            continue
        owner = zi.labels.get(ZONE_LABEL) or spec.zone
        if not owner or owner == local_zone:
            continue
        for avail in spec.available_services:
            service = avail.tags.get(SERVICE_TAG)
            key = (avail.mesh, service or "", owner)
            if not service or key in rows:
                continue  # the zone's own dataplanes are the better source
            rows[key] = {"instances": avail.instances,
                         "protocol": avail.tags.get(PROTOCOL_TAG, "tcp"), "via": "ingress"}
    return [{"mesh": mesh, "service": service, "zone": zone, **row}
            for (mesh, service, zone), row in sorted(rows.items())]


def services_router(manager: ResourceManager, local_zone: str) -> APIRouter:
    router = APIRouter(tags=["Service"])

    @router.get("/services/_overviews", summary="Every service, per zone, with instances")
    async def overviews() -> dict[str, Any]:
        dataplanes = (await manager.list("Dataplane")).items
        ingresses = (await manager.list("ZoneIngress")).items
        items = service_overviews(dataplanes, ingresses, local_zone)
        return {"items": items, "total": len(items), "next": None}

    return router
