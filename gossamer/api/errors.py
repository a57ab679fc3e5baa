"""One JSON shape for every error the API answers (see docs/api.md)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from gossamer.errors import GossamerError, InvalidResource, StoreUnavailable
from gossamer.model.base import format_loc


def problem(status: int, title: str, detail: str,
            field_errors: list[dict[str, str]] | None = None,
            headers: Mapping[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"status": status, "title": title, "detail": detail}
    if field_errors:
        body["fieldErrors"] = field_errors
    extra = dict(headers or {})
    if status == 401:
        extra["WWW-Authenticate"] = "Bearer"
    return JSONResponse(body, status_code=status, headers=extra or None)


# A store that does not answer (its database down): the client may retry, after this many
# seconds (the store probes the database twice a second and answers once it is back).
STORE_RETRY_AFTER = "1"


async def _gossamer_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, GossamerError)
    fields = None
    if isinstance(exc, InvalidResource):
        fields = [{"field": e.path, "message": e.message} for e in exc.field_errors]
    headers = {"Retry-After": STORE_RETRY_AFTER} if isinstance(exc, StoreUnavailable) else None
    return problem(exc.http_status, exc.title, exc.detail, fields, headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    fields = [{"field": format_loc(tuple(e["loc"])), "message": str(e["msg"])}
              for e in exc.errors()]
    detail = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
    return problem(400, "invalid request", detail, fields)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(_allowed_methods(request))
    return problem(exc.status_code, str(exc.detail).lower(), str(exc.detail), headers=headers)


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path. Starlette's own ``Allow`` names only
    the first route that matched the path, and each method is a route of its own here."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        route_methods = getattr(route, "methods", None)
        if match is not Match.NONE and route_methods:
            methods.update(route_methods)
    return sorted(methods)


def install(app: FastAPI) -> None:
    app.add_exception_handler(GossamerError, _gossamer_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
