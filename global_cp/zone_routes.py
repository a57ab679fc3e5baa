"""``/zones/{name}/_overview`` and ``/zones/_overviews``: zones with their sync insights."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from global_cp.insights import Insights
from gossamer.errors import NotFound
from gossamer.model.registry import to_document
from gossamer.resources import ResourceManager


def zone_overview_router(manager: ResourceManager, insights: Insights) -> APIRouter:
    router = APIRouter(tags=["Zone"])

    def overview(zone_doc: dict[str, Any] | None, name: str) -> dict[str, Any]:
        return {"name": name, "zone": zone_doc, "insight": insights.get(name).to_json()}

    @router.get("/zones/_overviews", summary="Every zone with its connection insight")
    async def overviews() -> dict[str, Any]:
        page = await manager.list("Zone")
        names = {z.name: to_document(z) for z in page.items}
        for insight in insights.all():
            names.setdefault(insight.zone, None)  # type: ignore[arg-type]
        items = [overview(doc, name) for name, doc in sorted(names.items())]
        return {"items": items, "total": len(items), "next": None}

    @router.get("/zones/{name}/_overview", summary="One zone with its connection insight")
    async def one(name: str) -> dict[str, Any]:
        try:
            doc = to_document(await manager.get("Zone", name))
        except NotFound:
            if name not in {i.zone for i in insights.all()}:
                raise
            doc = None
        return overview(doc, name)

    return router
