"""The ``gossamer`` CLI tests' tiny in-memory fake of docs/api.md.

``FakeControlPlane`` implements only what the contract says for the routes the CLI uses
(``/_apply``, list with paging, get, delete, the problem JSON, bearer auth) and is plugged
in through ``HandlerTransport`` (the CLI's transport seam, answered by an httpx-style
handler): no sockets. The fixtures that wire it (``fake``,
``token_file``, ``env``, ``cli``) are in ``tests/unit/conftest.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from click.testing import Result

from cli.http_wire import HttpRequest, HttpResponse
from gossamer.model.registry import REGISTRY, parse_document, to_document

TOKEN = "s3cret-admin-token"


NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


CREATED = "2024-05-01T09:00:00+00:00"  # three hours before NOW


def as_response(resp: httpx.Response) -> HttpResponse:
    """An httpx-built answer as the CLI's transport returns it."""
    resp.read()
    return HttpResponse(resp.status_code, resp.reason_phrase,
                        {k.lower(): v for k, v in resp.headers.items()}, resp.content)


class HandlerTransport:
    """A ``cli.http_wire.Transport`` whose answers come from ``handler``, in memory."""

    def __init__(self, handler: Callable[[httpx.Request], httpx.Response]) -> None:
        self.handler = handler

    def send(self, request: HttpRequest) -> HttpResponse:
        req = httpx.Request(request.method, request.url, headers=dict(request.headers),
                            content=request.body)
        return as_response(self.handler(req))

    def close(self) -> None:
        pass


def _problem(status: int, title: str, detail: str,
             field_errors: list[dict[str, str]] | None = None) -> httpx.Response:
    return httpx.Response(status, json={"status": status, "title": title, "detail": detail,
                                        "fieldErrors": field_errors or []})


class FakeControlPlane:
    """Resources in a dict, pages of at most ``page_size``; records each request seen."""

    def __init__(self, token: str = TOKEN, page_size: int = 1000) -> None:
        self.token = token
        self.page_size = page_size
        self.store: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.requests: list[httpx.Request] = []
        self.put({"type": "Mesh", "name": "default"})

    def put(self, doc: dict[str, Any]) -> str:
        res = parse_document(doc)
        stored = to_document(res, with_meta=False)
        old = self.store.get(res.key)
        if old is not None and {k: v for k, v in old.items() if k not in (
                "version", "creationTime")} == stored:
            return "unchanged"
        stored["version"] = (old or {}).get("version", 0) + 1
        stored["creationTime"] = CREATED
        self.store[res.key] = stored
        return "updated" if old else "created"

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return _problem(401, "unauthorized", "a valid admin bearer token is required")
        parts = [p for p in request.url.path.split("/") if p]
        if parts == ["_apply"] and request.method == "POST":
            return self._apply(json.loads(request.content))
        mesh = None
        if parts[:1] == ["meshes"] and len(parts) >= 3:
            mesh, parts = parts[1], parts[2:]
        desc = REGISTRY.by_path(parts[0])
        if desc is None:
            return _problem(404, "not found", f"no route {request.url.path}")
        if len(parts) == 1 and request.method == "GET":
            return self._list(desc.name, mesh, request.url.params)
        key = (desc.name, mesh or "", parts[1])
        if key not in self.store:
            return _problem(404, "not found", f"{desc.name} {parts[1]} not found")
        if request.method == "DELETE":
            del self.store[key]
            return httpx.Response(200, json={})
        return httpx.Response(200, json=self.store[key])

    def _list(self, kind: str, mesh: str | None, params: httpx.QueryParams) -> httpx.Response:
        wanted = dict(p.split("=") for p in params["labels"].split(",")) if "labels" in params \
            else {}
        items = [d for (t, m, _), d in sorted(self.store.items())
                 if t == kind and mesh in (None, m)
                 and all(d.get("labels", {}).get(k) == v for k, v in wanted.items())]
        size = min(int(params.get("size", 100)), self.page_size)
        start = int(params.get("offset", 0))
        nxt = str(start + size) if start + size < len(items) else None
        return httpx.Response(200, json={"items": items[start:start + size],
                                         "total": len(items), "next": nxt})

    def _apply(self, body: dict[str, Any]) -> httpx.Response:
        errors = []
        meshes = {name for (t, _, name) in self.store if t == "Mesh"}
        meshes |= {d["name"] for d in body["documents"] if d.get("type") == "Mesh"}
        for i, doc in enumerate(body["documents"]):
            res = parse_document(doc)  # the CLI validated already; the fake trusts nothing
            if res.mesh and res.mesh not in meshes:
                errors.append({"field": f"documents[{i}].mesh",
                               "message": f"mesh {res.mesh!r} does not exist"})
        if errors:
            joined = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
            return _problem(400, "invalid resource", f"invalid batch: {joined}", errors)
        results = []
        for doc in body["documents"]:
            res = parse_document(doc)
            action = "valid" if body["dryRun"] else self.put(doc)
            results.append({"type": res.type, "name": res.name, "mesh": res.mesh,
                            "action": action})
        return httpx.Response(200, json={"results": results})

    def paths(self, method: str) -> list[str]:
        return [str(r.url.path) for r in self.requests if r.method == method]


Invoke = Callable[..., Result]


def _no_traceback(result: Result) -> None:
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)

