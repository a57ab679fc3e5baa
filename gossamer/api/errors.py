"""One JSON shape for every error the API answers (see docs/api.md)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from gossamer.errors import GossamerError, InvalidResource
from gossamer.model.base import format_loc


def problem(status: int, title: str, detail: str,
            field_errors: list[dict[str, str]] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"status": status, "title": title, "detail": detail}
    if field_errors:
        body["fieldErrors"] = field_errors
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, headers=headers)


async def _gossamer_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, GossamerError)
    fields = None
    if isinstance(exc, InvalidResource):
        fields = [{"field": e.path, "message": e.message} for e in exc.field_errors]
    return problem(exc.http_status, exc.title, exc.detail, fields)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    fields = [{"field": format_loc(tuple(e["loc"])), "message": str(e["msg"])}
              for e in exc.errors()]
    detail = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
    return problem(400, "invalid request", detail, fields)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return problem(exc.status_code, str(exc.detail).lower(), str(exc.detail))


def install(app: FastAPI) -> None:
    app.add_exception_handler(GossamerError, _gossamer_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
