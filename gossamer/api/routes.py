"""Resource routes generated from the kind descriptors (docs/api.md).

One set of handlers serves every kind: ``add_kind_routes`` closes over a descriptor and
registers list/get/put/delete under the kind's REST path, so a new kind module appears in
the API (and in /openapi.json) with no code here.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request, Response

from gossamer.errors import FieldError, InvalidResource
from gossamer.model.base import KindDescriptor
from gossamer.model.registry import Registry, to_document
from gossamer.resources import Action, ResourceManager

MAX_LABEL_SELECTOR = 1024

Size = Annotated[int, Query(ge=1, le=1000, description="page size")]
Offset = Annotated[str | None, Query(max_length=1024, description="`next` of the last page")]
Labels = Annotated[str | None, Query(max_length=MAX_LABEL_SELECTOR,
                                     description="key=value,... that must all match")]


def parse_selector(text: str | None) -> dict[str, str] | None:
    """``"a=b,c=d"`` → ``{"a": "b", "c": "d"}``."""
    if not text:
        return None
    if len(text) > MAX_LABEL_SELECTOR:
        raise InvalidResource("label selector too long")
    selector = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise InvalidResource("invalid label selector",
                                  [FieldError("labels", f"expected key=value, got {part!r}")])
        selector[key.strip()] = value.strip()
    return selector


def _check_identity(desc: KindDescriptor, doc: dict[str, Any], name: str, mesh: str) -> None:
    errors = []
    if doc.get("type", desc.name) != desc.name:
        errors.append(FieldError("type", f"this path takes {desc.name}, not {doc.get('type')}"))
    if doc.get("name", name) != name:
        errors.append(FieldError("name", f"does not match the name in the path ({name!r})"))
    if desc.mesh_scoped and doc.get("mesh", mesh) != mesh:
        errors.append(FieldError("mesh", f"does not match the mesh in the path ({mesh!r})"))
    if errors:
        raise InvalidResource(f"invalid {desc.name} {name}", errors)


def add_kind_routes(router: APIRouter, desc: KindDescriptor, manager: ResourceManager) -> None:
    tag = desc.name
    base = f"/meshes/{{mesh}}/{desc.path}" if desc.mesh_scoped else f"/{desc.path}"

    # The mesh is a path parameter of mesh-scoped routes only; read it from the request
    # so one handler serves both shapes.
    async def list_(request: Request, size: Size = 100, offset: Offset = None,
                    labels: Labels = None) -> dict[str, Any]:
        mesh = request.path_params.get("mesh")
        page = await manager.list(desc.name, mesh, parse_selector(labels), size, offset)
        return {"items": [to_document(r, manager.registry) for r in page.items],
                "total": page.total, "next": page.next_token}

    async def get(request: Request, name: str) -> dict[str, Any]:
        mesh = request.path_params.get("mesh", "")
        return to_document(await manager.get(desc.name, name, mesh), manager.registry)

    async def put(request: Request, name: str, response: Response,
                  doc: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
        mesh = request.path_params.get("mesh", "")
        _check_identity(desc, doc, name, mesh)
        full = {**doc, "type": desc.name, "name": name}
        if desc.mesh_scoped:
            full["mesh"] = mesh
        res, version = manager.parse_one(full)
        applied = await manager.apply(res, version)
        response.status_code = 201 if applied.action is Action.CREATED else 200
        return to_document(applied.resource, manager.registry)

    async def delete(request: Request, name: str,
                     version: Annotated[int | None, Query(ge=1)] = None) -> dict[str, Any]:
        mesh = request.path_params.get("mesh", "")
        await manager.delete(desc.name, name, mesh, version)
        return {}

    summary = desc.description or desc.name
    router.add_api_route(base, list_, methods=["GET"], tags=[tag],
                         summary=f"List {desc.path}: {summary}")
    if desc.mesh_scoped:
        router.add_api_route(f"/{desc.path}", list_, methods=["GET"], tags=[tag],
                             summary=f"List {desc.path} across meshes")
    router.add_api_route(f"{base}/{{name}}", get, methods=["GET"], tags=[tag],
                         summary=f"Get one {desc.name}")
    router.add_api_route(f"{base}/{{name}}", put, methods=["PUT"], tags=[tag],
                         summary=f"Create or update a {desc.name}")
    router.add_api_route(f"{base}/{{name}}", delete, methods=["DELETE"], tags=[tag],
                         summary=f"Delete a {desc.name}")


def resource_router(registry: Registry, manager: ResourceManager) -> APIRouter:
    router = APIRouter()

    @router.post("/_apply", tags=["batch"],
                 summary="Validate a batch whole, then apply all of it or none")
    async def apply(body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
        docs = body.get("documents")
        if not isinstance(docs, list):
            raise InvalidResource("invalid batch",
                                  [FieldError("documents", "expected a list of documents")])
        dry_run = body.get("dryRun", False)
        if not isinstance(dry_run, bool):
            raise InvalidResource("invalid batch", [FieldError("dryRun", "expected a boolean")])
        results = await manager.apply_batch(docs, dry_run=dry_run)
        return {"results": [{"type": a.resource.type, "name": a.resource.name,
                             "mesh": a.resource.mesh, "action": a.action.value}
                            for a in results]}

    # Mesh must be registered before the mesh-scoped kinds so /meshes/{name} stays its own.
    for desc in sorted(registry, key=lambda d: (d.mesh_scoped, d.name)):
        add_kind_routes(router, desc, manager)
    return router

