"""The GUI's routes: its files at ``/gui``, sign-in and sign-out, and three read-only views.

Mounted by both the global and every zone CP (``gui_router(manager, local_zone)``), which
is why it lives in the kernel: ``global_cp`` and ``zone_cp`` cannot import each other.
The files are a static single-page app shipped in the package (``static/``, listed in
pyproject's package data): no CDN, no build step. The page itself holds no mesh data;
everything it shows comes from the API behind the admin token or the sign-in cookie
(``gossamer.gui.session``; the guard, ``gossamer.api.guard``, decides before any route).

The views (``gossamer.gui.views``) answer what the generic API does not: every policy with
the dataplanes it selects, one dataplane's matched policies, and who may call a service.
"""

from __future__ import annotations

import time
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from gossamer.errors import InvalidResource, NotFound
from gossamer.gui import views
from gossamer.gui.session import GuiSessions
from gossamer.model.base import Resource
from gossamer.model.labels import DISPLAY_NAME_LABEL, ZONE_LABEL
from gossamer.model.registry import to_document
from gossamer.resources import ResourceManager

STATIC = resources.files("gossamer.gui") / "static"
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
# The page runs only its own files and talks only to its own API; it may not be framed.
SECURITY = {"content-security-policy": "default-src 'self'; img-src 'self' data:; "
                                       "frame-ancestors 'none'; base-uri 'none'",
            "x-frame-options": "DENY", "x-content-type-options": "nosniff",
            "referrer-policy": "no-referrer", "cache-control": "no-cache"}
MAX_POLICIES = 1000


def _asset(name: str) -> Response:
    suffix = name[name.rfind("."):] if "." in name else ""
    path = STATIC / name
    if suffix not in TYPES or not path.is_file():
        raise NotFound(f"the GUI has no file {name!r}")
    return Response(path.read_bytes(), media_type=TYPES[suffix], headers=SECURITY)


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def file_routes(router: APIRouter, sessions: GuiSessions) -> None:
    @router.get("/gui", include_in_schema=False)
    async def gui_root() -> Response:
        return RedirectResponse("/gui/", status_code=308)

    @router.get("/gui/", include_in_schema=False)
    async def gui_index() -> Response:
        return _asset("index.html")

    @router.get("/gui/static/{name}", include_in_schema=False)
    async def gui_file(name: str) -> Response:
        return _asset(name)

    @router.post("/gui/session", summary="Sign the GUI in: the admin token (bearer) buys "
                 "an HttpOnly, SameSite=Strict cookie that authorizes GUI reads")
    async def sign_in(request: Request) -> Response:
        response = JSONResponse({"signedIn": True, "expiresIn": sessions.lifetime})
        response.headers["set-cookie"] = sessions.set_cookie(
            sessions.issue(time.time()), _secure(request))
        return response

    @router.post("/gui/signout", summary="Sign the GUI out: clears its cookie")
    async def sign_out(request: Request) -> Response:
        response = JSONResponse({"signedIn": False})
        response.headers["set-cookie"] = sessions.clear_cookie(_secure(request))
        return response


def view_routes(router: APIRouter, manager: ResourceManager, local_zone: str) -> None:
    async def policies(mesh: str | None = None, kind: str | None = None) -> list[Resource]:
        found = []
        for desc in manager.registry.policies():
            if not kind or desc.name == kind:
                found.extend((await manager.list(desc.name, mesh)).items)
        return found

    @router.get("/policies/_overviews", summary="Every policy (filtered by mesh, kind and "
                "name) with the dataplanes its targetRef selects")
    async def policy_overviews(
            mesh: str | None = None, kind: str | None = None, q: str = "",
            size: Annotated[int, Query(ge=1, le=MAX_POLICIES)] = MAX_POLICIES,
            offset: Annotated[int, Query(ge=0)] = 0) -> dict[str, Any]:
        if kind and manager.registry.find(kind) is None:
            raise InvalidResource(f"unknown policy kind {kind!r}")
        found = [p for p in await policies(mesh, kind)
                 if q.lower() in p.name.lower()]
        found.sort(key=lambda p: (p.type, p.mesh, p.name))
        shown = found[offset:offset + size]
        proxies = views.proxy_views((await manager.list("Dataplane", mesh)).items
                                    if shown else (), local_zone)
        items = [{"document": to_document(p),
                  "dataplanes": views.selected_dataplanes(p, proxies)} for p in shown]
        nxt = offset + size if offset + size < len(found) else None
        return {"items": items, "total": len(found), "next": nxt,
                "kinds": [d.name for d in manager.registry.policies()]}

    async def dataplane(mesh: str, name: str, zone: str | None) -> Resource:
        """By name; at the global, ``zone`` and the name the zone gave it (stored under
        ``gossamer.io/display-name``: ``views.as_named``)."""
        if zone:
            labels = {DISPLAY_NAME_LABEL: name, ZONE_LABEL: zone}
            found = (await manager.list("Dataplane", mesh, labels)).items
            if found:
                return found[0]
        return await manager.get("Dataplane", name, mesh)

    @router.get("/meshes/{mesh}/dataplanes/{name}/_policies",
                summary="The policies matched for one dataplane, per kind, with the merged "
                        "conf and which policies made it (?zone= at the global)")
    async def dataplane_policies(mesh: str, name: str,
                                 zone: str | None = None) -> dict[str, Any]:
        found = await dataplane(mesh, name, zone)
        services = views.mesh_services(mesh, (await manager.list("Dataplane", mesh)).items,
                                       (await manager.list("ZoneIngress")).items)
        return views.matched_json(found, await policies(mesh), local_zone, services)

    @router.get("/meshes/{mesh}/services/{service}/_callers",
                summary="Who may call a service: the MeshTrafficPermission result per "
                        "caller service")
    async def service_callers(mesh: str, service: str) -> dict[str, Any]:
        await manager.get("Mesh", mesh)
        dataplanes = (await manager.list("Dataplane", mesh)).items
        callers = views.mesh_services(mesh, dataplanes, (await manager.list("ZoneIngress")).items)
        if service not in callers:
            raise NotFound(f"no service {service!r} runs in mesh {mesh!r}")
        permissions = (await manager.list(views.MTP, mesh)).items
        return views.callers_json(mesh, service, dataplanes, permissions, callers, local_zone)


def gui_router(manager: ResourceManager, admin_token: str, local_zone: str = "") -> APIRouter:
    """The GUI on one control plane; ``local_zone`` is the zone CP's zone ("" at the global)."""
    router = APIRouter(tags=["GUI"])
    file_routes(router, GuiSessions(admin_token))
    view_routes(router, manager, local_zone)
    return router
