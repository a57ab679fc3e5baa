"""The Envoy admin relay's parts without a control plane: the shared terms
(``sync.relay``, ``sync.relay_wire``), the agent's end against a real HTTP server on
loopback (``proxy.agent.admin_relay``), a sidecar's channel at the zone CP with a real
mailbox (``zone_cp.admin_channel``) and the global's hub over an in-memory stream.
Against real Envoys, through real control planes: tests/integration/test_inspect_relay.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc
import pytest
from prometheus_client import CollectorRegistry

from global_cp.insights import Insights
from global_cp.inspect_relay import RelayHub
from proxy.agent.admin_relay import AdminRelay, fetch, pieces
from sync.relay import (
    MAX_BODY,
    AdminPage,
    AgentTooOld,
    BadRequest,
    EnvoyUnreachable,
    NotConnected,
    RelayError,
    RelayTimeout,
    ZoneOffline,
    ZoneTooOld,
    check_target,
    error_from,
)
from sync.relay_wire import outcome, page_name, reply
from sync.v1 import agent_pb2, sync_pb2
from zone_cp.admin_channel import AdminChannel, ReplyPiece
from zone_cp.mailbox import Mailbox
from zone_cp.updates import InspectEnvoy


def test_only_the_three_pages_and_valid_names_are_asked_for() -> None:
    check_target("default", "web-1", "config_dump", "east")
    for mesh, name, page, zone in [("default", "web-1", "/config_dump", None),
                                   ("default", "web-1", "runtime_modify", None),
                                   ("default", "../x", "stats", None),
                                   ("Default", "web-1", "stats", None),
                                   ("default", "web-1", "stats", "east zone")]:
        with pytest.raises(BadRequest):
            check_target(mesh, name, page, zone)
    with pytest.raises(BadRequest):
        page_name(99)  # a page number from a newer peer: refused, never guessed


def test_errors_cross_the_wire_by_code_and_unknown_codes_keep_their_words() -> None:
    err = error_from("agent-too-old", "too old")
    assert isinstance(err, AgentTooOld) and err.detail == "too old"
    odd = error_from("something-new", "the zone says so")
    assert type(odd) is RelayError and odd.detail == "the zone says so"
    with pytest.raises(NotConnected, match="no session"):
        outcome(reply(7, NotConnected("no session")))
    page = outcome(sync_pb2.RelayReply(request_id=7, body=b"x" * (MAX_BODY + 5),
                                       http_status=200))
    assert len(page.body) == MAX_BODY and page.truncated and "cut at 8 MiB" in page.note()


def test_the_agent_cuts_a_page_at_the_cap_in_pieces_under_the_message_limit() -> None:
    out = pieces(3, 200, b"a" * (MAX_BODY + 100))
    replies = [m.envoy_admin_reply for m in out]
    assert all(len(r.chunk) <= 1 << 20 for r in replies)
    assert sum(len(r.chunk) for r in replies) == MAX_BODY
    assert [r.last for r in replies] == [False] * (len(replies) - 1) + [True]
    assert replies[-1].truncated and replies[-1].http_status == 200
    assert [m.envoy_admin_reply.chunk for m in pieces(4, 200, b"")] == [b""]


@contextlib.asynccontextmanager
async def http_server(body: bytes, chunked: bool = False) -> AsyncIterator[int]:
    """A one-page HTTP/1.1 server on loopback, like Envoy's admin; the paths it saw."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        seen.append(request.split(b" ")[1].decode())
        if chunked:
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for i in range(0, len(body), 1 << 20):
                part = body[i:i + (1 << 20)]
                writer.write(b"%x\r\n%s\r\n" % (len(part), part))
            writer.write(b"0\r\n\r\n")
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    seen: list[str] = []
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def test_the_agent_fetches_a_page_and_cuts_a_huge_one() -> None:
    async with http_server(b'{"configs": []}') as port:
        assert await fetch(port, "/config_dump") == (200, b'{"configs": []}')
    async with http_server(b"s" * (MAX_BODY + (3 << 20)), chunked=True) as port:
        status, body = await fetch(port, "/stats")
        assert status == 200 and MAX_BODY < len(body) < MAX_BODY + (1 << 20)
        assert pieces(1, status, body)[-1].envoy_admin_reply.truncated


async def test_the_agent_names_an_envoy_that_does_not_answer() -> None:
    async with http_server(b"") as port:
        pass  # closed again: nothing listens on port now
    with pytest.raises(EnvoyUnreachable, match=f"127.0.0.1:{port}"):
        await fetch(port, "/stats", timeout=2)


async def test_the_agent_refuses_unknown_pages_and_a_second_request_while_busy() -> None:
    async with http_server(b"server.live: 1\n") as port:
        relay = AdminRelay(port)
        relay.handle(agent_pb2.EnvoyAdminRequest(request_id=1, page=42))  # type: ignore[arg-type]
        refused = (await relay.outbox.get()).envoy_admin_reply
        assert refused.last and refused.error.startswith("bad-request: ")
        relay.handle(agent_pb2.EnvoyAdminRequest(request_id=2,
                                                 page=agent_pb2.ENVOY_ADMIN_PAGE_STATS))
        relay.handle(agent_pb2.EnvoyAdminRequest(request_id=3,
                                                 page=agent_pb2.ENVOY_ADMIN_PAGE_STATS))
        first, second = (await relay.outbox.get()).envoy_admin_reply, (
            await relay.outbox.get()).envoy_admin_reply
        assert (first.request_id, first.error.split(":")[0]) == (3, "busy")
        assert (second.request_id, second.chunk, second.last) == (2, b"server.live: 1\n", True)


async def _agent_answers(updates: Mailbox, channel: AdminChannel,
                         answer: list[ReplyPiece]) -> InspectEnvoy:
    """Play the agent: take the request from the mailbox, answer with ``answer``'s pieces
    (their request ids replaced by the one asked, unless 0)."""
    request = await updates.get()
    assert isinstance(request, InspectEnvoy)
    for piece in answer:
        rid = request.request_id if piece.request_id else 12345
        channel.receive(ReplyPiece(rid, piece.chunk, piece.last, piece.http_status,
                                   piece.truncated, piece.error))
    return request


async def test_a_sidecar_channel_assembles_pieces_and_bounds_a_hostile_agent() -> None:
    channel, updates = AdminChannel(), Mailbox()
    with pytest.raises(AgentTooOld):
        await channel.ask(updates, "stats", timeout=1)
    channel.supported = True
    answer = [ReplyPiece(0, b"ignored", True, 200),  # another request's: dropped
              ReplyPiece(1, b"a" * (6 << 20), False),
              ReplyPiece(1, b"b" * (6 << 20), True, 200)]
    agent = asyncio.create_task(_agent_answers(updates, channel, answer))
    page = await channel.ask(updates, "config_dump", timeout=5)
    assert (await agent).page == "config_dump"
    assert page == AdminPage(200, b"a" * (6 << 20) + b"b" * (2 << 20), truncated=True)

    agent = asyncio.create_task(_agent_answers(
        updates, channel, [ReplyPiece(1, b"", True, error="envoy-unreachable: down")]))
    with pytest.raises(EnvoyUnreachable, match="down"):
        await channel.ask(updates, "stats", timeout=5)
    await agent


async def test_a_silent_agent_times_out_and_a_closed_session_fails_at_once() -> None:
    channel, updates = AdminChannel(), Mailbox()
    channel.supported = True
    with pytest.raises(RelayTimeout, match=r"did not answer within 0\.1s"):
        await channel.ask(updates, "stats", timeout=0.1)
    asking = asyncio.create_task(channel.ask(updates, "stats", timeout=30))
    await updates.get()
    channel.close()
    with pytest.raises(NotConnected):
        await asking


class _Pipe:
    """A relay stream's global end: what the global wrote, and replies to read."""

    def __init__(self) -> None:
        self.written: asyncio.Queue[sync_pb2.RelayRequest] = asyncio.Queue()
        self.replies: asyncio.Queue[object] = asyncio.Queue()

    async def read(self) -> object:
        return await self.replies.get()

    async def write(self, message: sync_pb2.RelayRequest) -> None:
        await self.written.put(message)


async def test_the_global_names_offline_and_too_old_zones_and_relays_replies() -> None:
    insights = Insights(CollectorRegistry())
    hub = RelayHub(insights, timeout=5)
    with pytest.raises(ZoneOffline, match="'east' is offline"):
        await hub.page("east", "default", "web-1", "stats")
    insights.connected("east", "0.1")  # its sync streams are up, no relay stream
    with pytest.raises(ZoneTooOld):
        await hub.page("east", "default", "web-1", "stats")

    pipe = _Pipe()
    serving = asyncio.create_task(hub.serve("east#3", pipe))  # runs before the ask below
    asking = asyncio.create_task(hub.page("east", "default", "web-1", "clusters"))
    request = await pipe.written.get()
    assert (request.inspect_envoy.dataplane, page_name(request.inspect_envoy.page)) == (
        "web-1", "clusters")
    await pipe.replies.put(reply(request.request_id + 1, AdminPage(200, b"other")))
    await pipe.replies.put(reply(request.request_id, AdminPage(200, b"backend::cx")))
    assert await asking == AdminPage(200, b"backend::cx")

    asking = asyncio.create_task(hub.page("east", "default", "web-1", "stats"))
    await pipe.written.get()
    await pipe.replies.put(grpc.aio.EOF)  # the zone went away
    with pytest.raises(ZoneOffline, match="disconnected before it answered"):
        await asking
    await serving
