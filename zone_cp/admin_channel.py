"""One sidecar's end of the Envoy admin relay at the zone CP (``sync.relay``).

The zone CP asks a sidecar's agent for an Envoy admin page by putting ``InspectEnvoy`` on
the session's ``updates`` (the Session stream the agent opened: nothing is dialled) and
waits for the reply pieces the agent sends up the same stream (``receive``, from
``zone_cp.agent_service``). One request at a time per sidecar (``ask`` queues behind the
one in flight, within the same deadline): the mailbox keeps one update per type, the
agent fetches one page at a time, and a page can be 8 MiB. Pieces of a request no longer
waited for are dropped; pieces past ``MAX_BODY`` too (``sync.relay.Assembly``).

``supported`` says whether the agent announced ``AgentFeatures.envoy_admin_relay``: an
older agent never answers, so asking it would only time out (``AgentTooOld`` instead).
``close`` (the session ended) fails the waiting request at once with ``NotConnected``.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass

from sync.relay import (
    AdminPage,
    AgentTooOld,
    Assembly,
    NotConnected,
    RelayError,
    RelayTimeout,
    error_from,
)
from zone_cp.mailbox import Mailbox
from zone_cp.updates import InspectEnvoy


@dataclass(frozen=True)
class ReplyPiece:
    """One ``EnvoyAdminReply`` as the zone CP reads it (converted at the gRPC edge)."""

    request_id: int
    chunk: bytes
    last: bool
    http_status: int = 0
    truncated: bool = False
    error: str = ""  # "<code>: <detail>" (sync.relay error codes)


def piece_error(error: str) -> RelayError:
    """The error an agent named as ``code: detail``."""
    code, sep, detail = error.partition(": ")
    return error_from(code, detail) if sep else error_from("relay-failed", error)


class AdminChannel:
    """The relay state of one sidecar session."""

    def __init__(self) -> None:
        self.supported = False
        self._lock = asyncio.Lock()
        self._ids = itertools.count(1)
        self._waiting: tuple[int, Assembly, asyncio.Future[AdminPage]] | None = None
        self._closed = False

    def receive(self, piece: ReplyPiece) -> None:
        """A piece from the agent: kept if it belongs to the request waited for."""
        waiting = self._waiting
        if waiting is None or piece.request_id != waiting[0] or waiting[2].done():
            return
        _, assembly, future = waiting
        if piece.error:
            future.set_exception(piece_error(piece.error))
            return
        assembly.add(piece.chunk)
        if piece.last:
            future.set_result(assembly.finish(piece.http_status, piece.truncated))

    def close(self) -> None:
        self._closed = True
        if self._waiting is not None and not self._waiting[2].done():
            self._waiting[2].set_exception(
                NotConnected("the dataplane's session ended before its agent answered"))

    async def ask(self, updates: Mailbox, page: str, timeout: float) -> AdminPage:
        """``page`` from the agent, within ``timeout`` seconds (waiting included)."""
        if not self.supported:
            raise AgentTooOld("the dataplane's agent does not relay Envoy admin pages "
                              "(it is older than this control plane, or still starting)")
        try:
            async with asyncio.timeout(timeout):
                async with self._lock:
                    return await self._exchange(updates, page)
        except TimeoutError:
            raise RelayTimeout(f"the dataplane's agent did not answer within "
                               f"{timeout:g}s") from None

    async def _exchange(self, updates: Mailbox, page: str) -> AdminPage:
        if self._closed:
            raise NotConnected("the dataplane's session ended")
        rid = next(self._ids)
        future: asyncio.Future[AdminPage] = asyncio.get_running_loop().create_future()
        self._waiting = (rid, Assembly(), future)
        try:
            updates.put_nowait(InspectEnvoy(rid, page))
            return await future
        finally:
            self._waiting = None
