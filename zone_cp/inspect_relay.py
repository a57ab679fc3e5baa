"""Envoy admin pages of this zone's sidecars, for ``inspect`` here and at the global.

``EnvoyInspector.page`` finds the sidecar's live Session and asks its agent
(``zone_cp.admin_channel``). Two callers: the zone's API
(``GET /meshes/{mesh}/dataplanes/{name}/_envoy/{page}``, behind the admin token like
every route) and the global, over ``ZoneSync.Relay``: ``serve_relay`` runs beside the two
sync streams on the channel the zone dialled, answers each ``RelayRequest`` in a task of
its own (at most ``MAX_IN_FLIGHT``; more are answered ``busy``) and writes the replies
one at a time. A global without ``Relay`` (UNIMPLEMENTED) is not asked again until the
link reconnects; any other failure of the relay stream is retried on the same channel
after ``RETRY`` seconds, without touching the sync streams.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc
from fastapi import APIRouter

from sync.relay import (
    ZONE_TIMEOUT,
    AdminPage,
    BadRequest,
    Busy,
    NotConnected,
    RelayError,
    check_target,
    page_json,
)
from sync.relay_wire import page_name, reply
from sync.v1 import sync_pb2, sync_pb2_grpc
from zone_cp.agent_session import AgentSession, sidecar_node_id
from zone_cp.agents import AgentRegistry

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 16
RETRY = 5.0


class EnvoyInspector:
    """Envoy admin pages of this zone's connected sidecars."""

    def __init__(self, agents: AgentRegistry, zone: str,
                 timeout: float = ZONE_TIMEOUT) -> None:
        self._agents = agents
        self.zone = zone
        self.timeout = timeout

    async def page(self, mesh: str, name: str, page: str) -> AdminPage:
        check_target(mesh, name, page)
        session = self._agents.sessions.get(sidecar_node_id(mesh, name))
        if not isinstance(session, AgentSession):
            raise NotConnected(f"dataplane {name!r} of mesh {mesh!r} has no live session "
                               f"with zone {self.zone!r}'s control plane")
        return await session.admin.ask(session.updates, page, self.timeout)

    async def answer(self, request: sync_pb2.RelayRequest) -> sync_pb2.RelayReply:
        """The reply to one of the global's requests (never raises a ``RelayError``)."""
        try:
            if request.WhichOneof("request") != "inspect_envoy":
                raise BadRequest("the global asked for something this zone does not relay")
            ask = request.inspect_envoy
            return reply(request.request_id,
                         await self.page(ask.mesh, ask.dataplane, page_name(ask.page)))
        except RelayError as exc:
            return reply(request.request_id, exc)


def inspect_router(inspector: EnvoyInspector) -> APIRouter:
    router = APIRouter(tags=["Dataplane"])

    @router.get("/meshes/{mesh}/dataplanes/{name}/_envoy/{page}",
                summary="A live Envoy admin page of one of this zone's sidecars "
                        "(config_dump, stats, clusters or certs), through its agent")
    async def envoy_page(mesh: str, name: str, page: str,
                         zone: str | None = None) -> dict[str, Any]:
        if zone is not None and zone != inspector.zone:
            raise BadRequest(f"this is zone {inspector.zone!r}'s control plane, not "
                             f"{zone[:80]!r}'s: ask the global, or that zone")
        answer = await inspector.page(mesh, name, page)
        return page_json(inspector.zone, mesh, name, page, answer)

    return router


async def serve_relay(channel: grpc.aio.Channel, metadata: Any,
                      inspector: EnvoyInspector) -> None:
    """Answer the global's relay requests for as long as the channel lives."""
    stub = sync_pb2_grpc.ZoneSyncStub(channel)
    while True:
        call = stub.Relay(metadata=metadata)
        try:
            await _answer_all(call, inspector)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                log.info("the global does not relay inspect requests (older version)")
                await asyncio.Event().wait()  # until the link is redialled
            log.warning("zone %s: the relay stream failed: %s: %s", inspector.zone,
                        exc.code().name, exc.details())
        finally:
            call.cancel()
        await asyncio.sleep(RETRY)


async def _answer_all(call: Any, inspector: EnvoyInspector) -> None:
    lock = asyncio.Lock()
    tasks: set[asyncio.Task[None]] = set()

    async def answer(request: sync_pb2.RelayRequest) -> None:
        message = await inspector.answer(request)
        async with lock:
            await call.write(message)

    try:
        while (request := await call.read()) is not grpc.aio.EOF:
            if len(tasks) >= MAX_IN_FLIGHT:
                async with lock:
                    await call.write(reply(request.request_id, Busy(
                        f"zone {inspector.zone!r} is relaying {MAX_IN_FLIGHT} requests "
                        "already")))
                continue
            task = asyncio.create_task(answer(request), name="relay-answer")
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
