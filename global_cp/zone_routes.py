"""``/zones/{name}/_overview`` and ``/zones/_overviews``: zones with their sync insights.

The insights are every replica's stored records merged (``global_cp.insight_store``), so
each replica answers alike."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter

from global_cp.insights import ZoneInsight
from gossamer.errors import NotFound
from gossamer.model.registry import to_document
from gossamer.resources import ResourceManager

InsightView = Callable[[], Awaitable[dict[str, ZoneInsight]]]


def zone_overview_router(manager: ResourceManager, view: InsightView) -> APIRouter:
    router = APIRouter(tags=["Zone"])

    def overview(zone_doc: dict[str, Any] | None, name: str,
                 insights: dict[str, ZoneInsight]) -> dict[str, Any]:
        insight = insights.get(name) or ZoneInsight(name)
        return {"name": name, "zone": zone_doc, "insight": insight.to_json()}

    @router.get("/zones/_overviews", summary="Every zone with its connection insight")
    async def overviews() -> dict[str, Any]:
        page = await manager.list("Zone")
        insights = await view()
        names = {z.name: to_document(z) for z in page.items}
        for zone in insights:
            names.setdefault(zone, None)  # type: ignore[arg-type]
        items = [overview(doc, name, insights) for name, doc in sorted(names.items())]
        return {"items": items, "total": len(items), "next": None}

    @router.get("/zones/{name}/_overview", summary="One zone with its connection insight")
    async def one(name: str) -> dict[str, Any]:
        insights = await view()
        try:
            doc = to_document(await manager.get("Zone", name))
        except NotFound:
            if name not in insights:
                raise
            doc = None
        return overview(doc, name, insights)

    return router
