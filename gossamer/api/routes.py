"""Resource routes generated from the kind descriptors (docs/api.md).

One set of handlers serves every kind: ``add_kind_routes`` closes over a descriptor and
registers list/get/put/delete under the kind's REST path, so a new kind module appears in
the API (and in /openapi.json) with no code here.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request, Response

from gossamer.api import errors
from gossamer.api.batch_body import BatchReader
from gossamer.errors import FieldError, InvalidResource
from gossamer.model.base import KindDescriptor
from gossamer.model.registry import Registry, to_document
from gossamer.resources import Action, Applied, ResourceManager
from gossamer.store import codec
from gossamer.store.turns import Turns

MAX_LABEL_SELECTOR = 1024
# On a read answered from the control plane's view while its store does not answer:
# why, and since when (``gossamer.store.view.Stale``).
STALE_HEADER = "Gossamer-Stale"

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
    async def list_(request: Request, response: Response, size: Size = 100,
                    offset: Offset = None, labels: Labels = None) -> dict[str, Any]:
        mesh = request.path_params.get("mesh")
        read = await manager.read_list(desc.name, mesh, parse_selector(labels), size, offset)
        if read.stale is not None:
            response.headers[STALE_HEADER] = read.stale.header()
        page = read.page
        return {"items": [to_document(r, manager.registry) for r in page.items],
                "total": page.total, "next": page.next_token}

    async def get(request: Request, name: str, response: Response) -> Any:
        mesh = request.path_params.get("mesh", "")
        read = await manager.read(desc.name, name, mesh)
        stale = {STALE_HEADER: read.stale.header()} if read.stale is not None else {}
        if read.resource is None:
            missing = codec.not_found(desc.name, name, mesh)
            if not stale:
                raise missing
            return errors.problem(404, missing.title, missing.detail, headers=stale)
        response.headers.update(stale)
        return to_document(read.resource, manager.registry)

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
                         response_model=dict[str, Any], summary=f"Get one {desc.name}")
    router.add_api_route(f"{base}/{{name}}", put, methods=["PUT"], tags=[tag],
                         summary=f"Create or update a {desc.name}")
    router.add_api_route(f"{base}/{{name}}", delete, methods=["DELETE"], tags=[tag],
                         summary=f"Delete a {desc.name}")


APPLY_BODY: dict[str, Any] = {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "title": "Batch", "additionalProperties": True,
    "properties": {"documents": {"type": "array", "items": {"type": "object"}},
                   "dryRun": {"type": "boolean"}}}}}}
APPLY_ANSWER: dict[str, Any] = {"type": "object", "title": "Applied", "properties": {
    "results": {"type": "array", "items": {"type": "object", "properties": {
        "type": {"type": "string"}, "name": {"type": "string"}, "mesh": {"type": "string"},
        "action": {"type": "string"}}}}}}


async def _batch_body(request: Request) -> dict[str, Any]:
    """The body's JSON object, decoded a document at a time (``batch_body``)."""
    content_type = request.headers.get("content-type", "application/json")
    media = content_type.split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise InvalidResource("invalid batch", [FieldError(
            "body", f"expected application/json, not {media or 'no content type'}")])
    reader = BatchReader(await request.body())
    turns = Turns()
    for _ in reader.steps():
        await turns.tick()
    return reader.value


async def _results_json(results: list[Applied]) -> bytes:
    """``{"results": [...]}`` encoded a slice at a time (FastAPI's own encoder took
    90 ms for 5,000 results in one step)."""
    parts = []
    turns = Turns()
    for a in results:
        parts.append(json.dumps({"type": a.resource.type, "name": a.resource.name,
                                 "mesh": a.resource.mesh, "action": a.action.value},
                                separators=(",", ":")))
        await turns.tick()
    return ('{"results":[' + ",".join(parts) + "]}").encode()


def resource_router(registry: Registry, manager: ResourceManager) -> APIRouter:
    router = APIRouter()

    @router.post("/_apply", tags=["batch"],
                 summary="Validate a batch whole, then apply all of it or none",
                 openapi_extra={"requestBody": APPLY_BODY},
                 responses={200: {"content": {"application/json": {"schema": APPLY_ANSWER}}}})
    async def apply(request: Request) -> Response:
        # The body is read and decoded here rather than by FastAPI, one document per
        # step (``batch_body``), and the answer encoded likewise: each, in one step, held
        # the loop for tens to hundreds of milliseconds on a batch of thousands.
        body = await _batch_body(request)
        docs = body.get("documents")
        if not isinstance(docs, list):
            raise InvalidResource("invalid batch",
                                  [FieldError("documents", "expected a list of documents")])
        dry_run = body.get("dryRun", False)
        if not isinstance(dry_run, bool):
            raise InvalidResource("invalid batch", [FieldError("dryRun", "expected a boolean")])
        results = await manager.apply_batch(docs, dry_run=dry_run)
        return Response(await _results_json(results), media_type="application/json")

    # Mesh must be registered before the mesh-scoped kinds so /meshes/{name} stays its own.
    for desc in sorted(registry, key=lambda d: (d.mesh_scoped, d.name)):
        add_kind_routes(router, desc, manager)
    return router

