"""The control-plane HTTP API as a FastAPI app, shared by the global and zone CPs.

``build_app`` takes everything it serves from one ``ApiContext`` so the global and the
zone assemble it the same way; routes beyond the generic resource ones (tokens, inspect)
are passed in as extra routers by each control plane.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

import gossamer
from gossamer.api import errors
from gossamer.api.auth import BearerAuth
from gossamer.api.routes import resource_router
from gossamer.errors import GossamerError
from gossamer.resources import ResourceManager


@dataclass
class ApiContext:
    """What one control plane's API serves.

    ``mode`` is ``global``, ``zone`` or ``standalone`` (shown at ``GET /``); ``metrics`` is
    the process's Prometheus registry, which other components add their metrics to.
    """

    manager: ResourceManager
    admin_token: str
    mode: str
    metrics: CollectorRegistry = field(default_factory=CollectorRegistry)
    extra_routers: Sequence[APIRouter] = ()
    extra_info: Callable[[], dict[str, Any]] = dict


def build_app(ctx: ApiContext) -> FastAPI:
    app = FastAPI(title="Gossamer control plane", version=gossamer.__version__,
                  docs_url="/docs", redoc_url=None)
    errors.install(app)
    _instrument(app, ctx.metrics)
    auth = [Depends(BearerAuth(ctx.admin_token))]

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

    @app.get("/metrics", tags=["health"])
    async def metrics() -> Response:
        return Response(generate_latest(ctx.metrics), media_type=CONTENT_TYPE_LATEST)

    # Extra routes first: `/zones/_overviews` must not be taken for the Zone "_overviews".
    for router in ctx.extra_routers:
        app.include_router(router, dependencies=auth)
    app.include_router(resource_router(ctx.manager.registry, ctx.manager), dependencies=auth)
    return app


def _instrument(app: FastAPI, registry: CollectorRegistry) -> None:
    requests = Counter("gossamer_api_requests", "API requests by route and status",
                       ["method", "route", "status"], registry=registry)
    latency = Histogram("gossamer_api_request_duration_seconds", "API request latency",
                        ["method", "route"], registry=registry)

    @app.middleware("http")
    async def observe(request: Request,
                      call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        template = getattr(route, "path", "unmatched")
        requests.labels(request.method, template, str(response.status_code)).inc()
        latency.labels(request.method, template).observe(time.perf_counter() - start)
        return response
