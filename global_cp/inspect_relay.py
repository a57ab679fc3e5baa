"""The global's end of the Envoy admin relay (``sync.relay``): ``inspect`` of any zone's
sidecar from the global, with nothing dialled from the global to a zone.

Each zone opens ``ZoneSync.Relay`` beside its two sync streams (``zone_cp.inspect_relay``),
admitted like them (zone token, enabled zone; cut off with them: ``global_cp.sync_server``).
``RelayHub.serve`` keeps that stream as the zone's ``_Link``; ``page`` writes a
``RelayRequest`` on it and waits for the ``RelayReply`` of the same id, at most
``GLOBAL_TIMEOUT`` (longer than the zone waits for its agent, so a slow agent is named
as such). A zone with no relay stream is offline, or, while its sync streams are up, too
old to relay. At most ``MAX_PENDING`` requests wait per zone; a reply to an id not
waited for is dropped. The API route (``GET /meshes/{mesh}/dataplanes/{name}/_envoy/
{page}?zone=Z``) is behind the admin token like every route of the API.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any

import grpc
from fastapi import APIRouter

from global_cp.insights import Insights
from sync.relay import (
    GLOBAL_TIMEOUT,
    AdminPage,
    BadRequest,
    Busy,
    RelayTimeout,
    ZoneOffline,
    ZoneTooOld,
    check_target,
    page_json,
)
from sync.relay_wire import outcome, page_value
from sync.stream import MessageStream
from sync.v1 import sync_pb2

log = logging.getLogger(__name__)

MAX_PENDING = 64


class _Link:
    """One zone's relay stream and the requests waiting on it."""

    def __init__(self, zone: str, stream: MessageStream) -> None:
        self.zone = zone
        self._stream = stream
        self._write = asyncio.Lock()
        self._pending: dict[int, asyncio.Future[sync_pb2.RelayReply]] = {}

    def resolve(self, message: sync_pb2.RelayReply) -> None:
        future = self._pending.get(message.request_id)
        if future is not None and not future.done():
            future.set_result(message)

    def close(self) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ZoneOffline(
                    f"zone {self.zone!r} disconnected before it answered"))

    async def ask(self, request: sync_pb2.RelayRequest, timeout: float) -> AdminPage:
        if len(self._pending) >= MAX_PENDING:
            raise Busy(f"{MAX_PENDING} inspect requests are waiting on zone "
                       f"{self.zone!r} already")
        future: asyncio.Future[sync_pb2.RelayReply] = (
            asyncio.get_running_loop().create_future())
        self._pending[request.request_id] = future
        try:
            async with asyncio.timeout(timeout):
                async with self._write:
                    await self._stream.write(request)
                return outcome(await future)
        except TimeoutError:
            raise RelayTimeout(f"zone {self.zone!r} did not answer within "
                               f"{timeout:g}s") from None
        finally:
            del self._pending[request.request_id]


class RelayHub:
    """Every zone's relay stream, by zone."""

    def __init__(self, insights: Insights, timeout: float = GLOBAL_TIMEOUT) -> None:
        self._insights = insights
        self._links: dict[str, _Link] = {}
        self._ids = itertools.count(1)
        self.timeout = timeout

    async def serve(self, sid: str, stream: MessageStream) -> None:
        """Keep ``stream`` as its zone's link until it ends (a newer one replaces it)."""
        zone = sid.split("#")[0]
        link = self._links[zone] = _Link(zone, stream)
        try:
            while (message := await stream.read()) is not grpc.aio.EOF:
                if isinstance(message, sync_pb2.RelayReply):
                    link.resolve(message)
        finally:
            if self._links.get(zone) is link:
                del self._links[zone]
            link.close()

    async def page(self, zone: str, mesh: str, name: str, page: str) -> AdminPage:
        check_target(mesh, name, page, zone)
        link = self._links.get(zone)
        if link is None:
            if any(z.zone == zone and z.online for z in self._insights.all()):
                raise ZoneTooOld(f"zone {zone!r} is connected but does not relay inspect "
                                 "requests: its control plane is older than the global's")
            raise ZoneOffline(f"zone {zone!r} is offline: it has no live sync link with "
                              "the global")
        request = sync_pb2.RelayRequest(
            request_id=next(self._ids), inspect_envoy=sync_pb2.InspectEnvoy(
                mesh=mesh, dataplane=name, page=page_value(page)))  # type: ignore[arg-type]
        return await link.ask(request, self.timeout)


def inspect_router(hub: RelayHub) -> APIRouter:
    router = APIRouter(tags=["Dataplane"])

    @router.get("/meshes/{mesh}/dataplanes/{name}/_envoy/{page}",
                summary="A live Envoy admin page (config_dump, stats, clusters or certs) of a "
                        "sidecar in zone ?zone=, relayed by that zone from its agent")
    async def envoy_page(mesh: str, name: str, page: str,
                         zone: str | None = None) -> dict[str, Any]:
        if not zone:
            raise BadRequest("at the global, name the dataplane's zone (?zone=, "
                             "or --zone with gossamer inspect)")
        answer = await hub.page(zone, mesh, name, page)
        return page_json(zone, mesh, name, page, answer)

    return router
