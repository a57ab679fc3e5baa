"""The agent's end of the Envoy admin relay (``sync.relay``): fetch one admin page from
Envoy on 127.0.0.1 when the zone CP asks on the Session, and send it back in pieces.

The request comes from the network, so it is checked here again whatever the zone CP
checked: it names a page (``EnvoyAdminPage``), never a path, and a value this agent does
not know is refused; only ``GET`` of the pages of ``sync.relay.PAGES`` is ever
sent to Envoy. One request at a time: another one while a page is being fetched is
answered ``busy`` at once, so a control plane cannot make the agent hold many pages.
Envoy's answer is read up to ``MAX_BODY`` (the rest is not read: ``truncated``) within
``ENVOY_TIMEOUT``; the replies go into ``outbox`` (bounded), which the Session writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from proxy.agent.admin_http import AdminUnreachable, parse_response
from sync.relay import (
    ENVOY_TIMEOUT,
    MAX_BODY,
    PAGES,
    BadRequest,
    Busy,
    EnvoyUnreachable,
    RelayError,
    chunks,
)
from sync.relay_wire import page_name
from sync.v1 import agent_pb2

log = logging.getLogger(__name__)

HEAD_ROOM = 64 << 10  # the response head and chunk framing, read beyond MAX_BODY
OUTBOX = 32  # pieces waiting for the Session: one page is at most 9


def _reply(request_id: int, **fields: object) -> agent_pb2.AgentMessage:
    return agent_pb2.AgentMessage(envoy_admin_reply=agent_pb2.EnvoyAdminReply(
        request_id=request_id, **fields))  # type: ignore[arg-type]


def failure(request_id: int, error: RelayError) -> agent_pb2.AgentMessage:
    """The one piece that says why there is no page."""
    return _reply(request_id, last=True, error=f"{error.code}: {error.detail}")


def pieces(request_id: int, status: int, body: bytes) -> list[agent_pb2.AgentMessage]:
    """A page as reply pieces, cut at ``MAX_BODY``."""
    truncated = len(body) > MAX_BODY
    parts = chunks(body[:MAX_BODY])
    out = [_reply(request_id, chunk=part) for part in parts[:-1]]
    out.append(_reply(request_id, chunk=parts[-1], last=True, http_status=status,
                      truncated=truncated))
    return out


async def fetch(port: int, path: str, timeout: float = ENVOY_TIMEOUT) -> tuple[int, bytes]:
    """``GET path`` on Envoy's admin at 127.0.0.1:``port``: (status, body), the body read
    no further than ``MAX_BODY`` and a little (a longer one is cut by ``pieces``)."""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                             "Connection: close\r\n\r\n".encode())
                await writer.drain()
                raw = bytearray()
                while len(raw) <= MAX_BODY + HEAD_ROOM and (
                        chunk := await reader.read(1 << 16)):
                    raw += chunk
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except (OSError, TimeoutError) as exc:
        raise EnvoyUnreachable(f"Envoy's admin on 127.0.0.1:{port}: "
                               f"{exc or type(exc).__name__}") from None
    try:
        answer = parse_response(bytes(raw))
    except AdminUnreachable as exc:
        raise EnvoyUnreachable(str(exc)) from None
    return answer.status, answer.text.encode()


class AdminRelay:
    """Answers the Session's ``EnvoyAdminRequest`` messages, one at a time."""

    def __init__(self, admin_port: int) -> None:
        self._port = admin_port
        self.outbox: asyncio.Queue[agent_pb2.AgentMessage] = asyncio.Queue(OUTBOX)
        self._task: asyncio.Task[None] | None = None

    def handle(self, request: agent_pb2.EnvoyAdminRequest) -> None:
        """Start fetching the page asked for, or answer at once why not."""
        rid = request.request_id
        try:
            path = PAGES[page_name(request.page)]
        except BadRequest as exc:
            log.warning("the control plane asked for an Envoy admin page refused: %s",
                        exc.detail)
            self._send(failure(rid, exc))
            return
        if self._task is not None and not self._task.done():
            self._send(failure(rid, Busy("the agent is still fetching another page")))
            return
        self._task = asyncio.create_task(self._answer(rid, path), name="envoy-admin-relay")

    async def _answer(self, request_id: int, path: str) -> None:
        try:
            status, body = await fetch(self._port, path)
        except RelayError as exc:
            await self.outbox.put(failure(request_id, exc))
            return
        for piece in pieces(request_id, status, body):
            await self.outbox.put(piece)

    def _send(self, message: agent_pb2.AgentMessage) -> None:
        """Queue a one-piece answer; dropped when the Session is that far behind (the
        control plane then times the request out)."""
        with contextlib.suppress(asyncio.QueueFull):
            self.outbox.put_nowait(message)

    def reset(self) -> None:
        """A new stream: what was queued for the old one is for requests it took along."""
        if self._task is not None:
            self._task.cancel()
        while not self.outbox.empty():
            self.outbox.get_nowait()
