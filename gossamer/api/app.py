"""The control-plane HTTP API as a FastAPI app, shared by the global and zone CPs.

``build_app`` takes everything it serves from one ``ApiContext`` so the global and the
zone assemble it the same way; routes beyond the generic resource ones (tokens, inspect)
are passed in as extra routers by each control plane. ``ApiGuard`` wraps the whole app:
the admin token and the body limit are checked on the request head, before any route
reads a body.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, FastAPI, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import gossamer
from gossamer.api import errors, openapi
from gossamer.api.guard import ApiGuard
from gossamer.api.routes import resource_router
from gossamer.errors import GossamerError
from gossamer.resources import ResourceManager
from gossamer.settings import DEFAULT_API_MAX_BODY


@dataclass
class ApiContext:
    """What one control plane's API serves.

    ``mode`` is ``global``, ``zone`` or ``standalone`` (shown at ``GET /``); ``metrics`` is
    the process's Prometheus registry, which other components add their metrics to;
    ``max_body`` bounds every request body (``--api-max-body``).
    """

    manager: ResourceManager
    admin_token: str
    mode: str
    metrics: CollectorRegistry = field(default_factory=CollectorRegistry)
    extra_routers: Sequence[APIRouter] = ()
    extra_info: Callable[[], dict[str, Any]] = dict
    max_body: int = DEFAULT_API_MAX_BODY


def build_app(ctx: ApiContext) -> FastAPI:
    app = FastAPI(title="Gossamer control plane", version=gossamer.__version__,
                  docs_url="/docs", redoc_url=None)
    errors.install(app)
    openapi.install(app)
    _instrument(app, ctx.metrics)
    # Added last, so outermost of the app's own middleware: nothing runs before it.
    app.add_middleware(ApiGuard, admin_token=ctx.admin_token, max_body=ctx.max_body)

    @app.get("/", tags=["health"])
    async def index() -> dict[str, Any]:
        return {"product": "gossamer", "version": gossamer.__version__, "mode": ctx.mode,
                **ctx.extra_info()}

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz() -> Response:
        try:
            revision = await ctx.manager.store.revision()
        except GossamerError as exc:
            return errors.problem(503, "not ready", f"the store does not answer: {exc.detail}")
        return Response(f'{{"status":"ready","revision":{revision}}}',
                        media_type="application/json")

    @app.get("/metrics", tags=["health"], response_class=PlainTextResponse,
             responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}})
    async def metrics() -> Response:
        return Response(generate_latest(ctx.metrics), media_type=CONTENT_TYPE_LATEST)

    # Extra routes first: `/zones/_overviews` must not be taken for the Zone "_overviews".
    for router in ctx.extra_routers:
        app.include_router(router)
    app.include_router(resource_router(ctx.manager.registry, ctx.manager))
    return app


WARM_UP_PATH = "/_gossamer/warm-up"  # matches no route


async def warm_routes(app: FastAPI) -> None:
    """Build every router's request-time state now, before the API serves.

    FastAPI (0.165) builds an included router's route state on the first request that
    goes through it: 100-140 ms of the event loop, once per process but at whatever
    moment that request comes, a batch's included. A request that matches no route
    makes the router consult every route, which builds them all; it goes to the
    router itself, not through ``ApiGuard``, and its 404 is dropped."""
    scope = {"type": "http", "method": "GET", "path": WARM_UP_PATH,
             "raw_path": WARM_UP_PATH.encode(), "query_string": b"", "headers": [],
             "root_path": "", "scheme": "http", "http_version": "1.1", "app": app,
             "server": ("127.0.0.1", 0), "client": ("127.0.0.1", 0)}

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        return None

    with suppress(StarletteHTTPException):  # the 404 of a path no route matches
        await app.router(scope, receive, send)


class _Observe:
    """Counts and times requests per route template.

    Plain ASGI rather than ``@app.middleware("http")``: Starlette's ``BaseHTTPMiddleware``
    reads the body through a task group, which wraps ``ApiGuard``'s 413 in an exception
    group that FastAPI then answers as a 400."""

    def __init__(self, app: ASGIApp, requests: Counter, latency: Histogram) -> None:
        self.app, self.requests, self.latency = app, requests, latency

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the client gets when the app raises before answering

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            template = getattr(scope.get("route"), "path", "unmatched")
            self.requests.labels(scope["method"], template, str(status)).inc()
            self.latency.labels(scope["method"], template).observe(time.perf_counter() - start)


def _instrument(app: FastAPI, registry: CollectorRegistry) -> None:
    requests = Counter("gossamer_api_requests", "API requests by route and status",
                       ["method", "route", "status"], registry=registry)
    latency = Histogram("gossamer_api_request_duration_seconds", "API request latency",
                        ["method", "route"], registry=registry)
    app.add_middleware(_Observe, requests=requests, latency=latency)
