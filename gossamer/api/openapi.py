"""The API's ``/openapi.json``, completed with what FastAPI cannot see from the handlers.

FastAPI describes each route from its signature. Three things live elsewhere and are
added here, so the document tells clients (and schemathesis, which tests the live API
against it in ``make test``) what the server really answers:

- the error answers: every operation may answer with the problem shape of
  ``gossamer.api.errors`` (400, 401, 404, 409, 413, 503; never FastAPI's 422, since
  validation errors are answered as 400), and a ``PUT`` creates with 201;
- the bearer token, which ``ApiGuard`` checks outside any route: a security scheme,
  required by every operation outside ``PUBLIC_PATHS`` (and the GUI's own files);
- path parameters a handler reads from the request instead of its signature
  (``{mesh}`` in the generic resource routes).

``complete`` is a pure function of the document FastAPI generated.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from gossamer.api.guard import PUBLIC_PATHS
from gossamer.gui.session import is_static

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "An error answer (docs/api.md).",
    "required": ["status", "title", "detail"],
    "properties": {
        "status": {"type": "integer"},
        "title": {"type": "string"},
        "detail": {"type": "string"},
        "fieldErrors": {"type": "array", "items": {
            "type": "object", "required": ["field", "message"],
            "properties": {"field": {"type": "string"}, "message": {"type": "string"}}}},
    },
}
ERRORS = {
    "400": "Invalid request: the fields at fault are named",
    "401": "No admin token, or not the right one",
    "404": "No such resource or route",
    "409": "Conflict: a stale version, or the resource exists",
    "413": "The body is larger than --api-max-body",
    "503": "The store does not answer",
}
PUBLIC_ERRORS = ("413", "503")
_PATH_PARAM = re.compile(r"{(\w+)}")
_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def _problem_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Problem"}}}}


def _complete_operation(path: str, method: str, op: dict[str, Any]) -> None:
    params = op.setdefault("parameters", [])
    declared = {p.get("name") for p in params if p.get("in") == "path"}
    for name in _PATH_PARAM.findall(path):
        if name not in declared:
            params.insert(0, {"name": name, "in": "path", "required": True,
                              "schema": {"type": "string", "minLength": 1}})
    if not params:
        del op["parameters"]
    responses = op.setdefault("responses", {})
    responses.pop("422", None)
    public = path in PUBLIC_PATHS or is_static(path)
    for code, description in ERRORS.items():
        if not public or code in PUBLIC_ERRORS:
            responses.setdefault(code, _problem_response(description))
    if method == "put" and "200" in responses:
        responses.setdefault("201", {**responses["200"], "description": "Created"})
    if public:
        op["security"] = []


def complete(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with error answers, the bearer scheme and every path parameter."""
    for path, item in schema.get("paths", {}).items():
        for method in _METHODS:
            if method in item:
                _complete_operation(path, method, item[method])
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    components["securitySchemes"] = {"adminToken": {
        "type": "http", "scheme": "bearer",
        "description": "The admin token from DATA_DIR/admin-token"}}
    schema["security"] = [{"adminToken": []}]
    return schema


def install(app: FastAPI) -> None:
    """Serve the completed document at ``/openapi.json`` (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(get_openapi(
                title=app.title, version=app.version, routes=app.routes))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
