"""The agent's SDS server: Envoy's ``SecretDiscoveryService`` on a unix socket.

The socket lives in the agent's work directory (mode 0700) and is itself made 0600, so
only the agent's user can ask it for the private key. Unix socket paths are limited to
about 100 bytes; when the work directory is deeper than that, the socket goes to a fresh
0700 directory under the system's temporary directory instead (``socket_path``).

``SecretServer.update`` replaces what is served and wakes every open stream, which
pushes the new versions to Envoy at once: this is how a rotated certificate or a changed
trust bundle reaches Envoy without a restart. ``StreamSecrets`` (state of the world) is
driven by ``sds_state.SotwState``; ``DeltaSecrets`` by the shared delta engine
(``sync.engine.Engine``), so ACK/NACK, holds on refused versions and resumption behave as
on every other delta link. Envoy does not understand Gossamer's application heartbeats,
so neither dialect sends any: the stream is a local socket and dies with either end.

``trust_ack`` says whether every open stream that subscribes to the trust bundle has
ACKed its current version (``sds_state.trust_ack``, from each stream's ``SotwState`` or
the engine's acked and held versions); ``watch_trust`` calls back whenever that verdict
changes (a request, a stream opening or closing, a new version), so the agent reports a
bundle only once Envoy has it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from envoy.service.discovery.v3 import discovery_pb2
from grpclib.const import Cardinality, Handler, Status
from grpclib.exceptions import GRPCError
from grpclib.server import Server, Stream

from proxy.agent.sds_state import (
    SECRET_TYPE,
    DeltaWants,
    SotwRequest,
    SotwState,
    StreamView,
    TrustAck,
    TrustPhase,
    trust_ack,
)
from proxy.names import TRUST_SECRET
from sync import wire
from sync.engine import Engine, counter_nonces
from sync.errors import RemoteProtocolError
from sync.messages import Entry

log = logging.getLogger(__name__)

MAX_UNIX_PATH = 100
SERVICE = "/envoy.service.secret.v3.SecretDiscoveryService/"
_WAKE = object()
_TIMEOUT = object()


def socket_path(work_dir: Path, name: str = "sds.sock") -> Path:
    """Where to bind: in ``work_dir`` if the path fits a unix socket, else a private
    temporary directory (the caller removes it with ``cleanup_socket``)."""
    path = work_dir.resolve() / name
    if len(str(path)) <= MAX_UNIX_PATH:
        return path
    return Path(tempfile.mkdtemp(prefix="gossamer-sds-")) / name


def cleanup_socket(path: Path, work_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    if path.parent != work_dir.resolve() and path.parent.name.startswith("gossamer-sds-"):
        with contextlib.suppress(OSError):
            path.parent.rmdir()


class _Inbox:
    """Requests from one stream and wake-ups from ``update``, in one queue."""

    def __init__(self, context: Any) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read(context))

    async def _read(self, context: Any) -> None:
        try:
            while True:
                msg = await context.read()
                if msg is None:
                    self.queue.put_nowait(None)
                    return
                self.queue.put_nowait(msg)
        except Exception as exc:  # the shell's top level: hand it to the stream loop
            self.queue.put_nowait(exc)

    def wake(self) -> None:
        self.queue.put_nowait(_WAKE)

    async def next(self, timeout: float | None) -> Any:
        try:
            return await asyncio.wait_for(self.queue.get(),
                                          None if timeout is None else max(timeout, 0.0))
        except TimeoutError:
            return _TIMEOUT

    def close(self) -> None:
        self._reader.cancel()


class _Context:
    """A grpclib server stream with the shape the stream loops read and write."""

    def __init__(self, stream: Stream[Any, Any]) -> None:
        self._stream = stream

    async def read(self) -> Any:
        return await self._stream.recv_message()  # None once Envoy ended its side

    async def write(self, message: Any) -> None:
        await self._stream.send_message(message)

    async def abort(self, code: str, details: str) -> None:
        raise GRPCError(Status[code], details)


class SecretServer:
    """Serves the agent's secrets to any number of SDS streams (grpclib: see
    ``proxy.agent.grpc_wire`` for why not grpcio)."""

    def __init__(self) -> None:
        self._desired: dict[str, Entry] = {}
        self._engine = Engine(nonces=counter_nonces("sds-"))
        self._wakers: set[Callable[[], None]] = set()
        self._ids = itertools.count(1)
        self._server: Server | None = None
        self.path: Path | None = None
        self.last_nack: str | None = None
        self.streams = 0
        self._sotw: dict[str, SotwState] = {}
        self._delta: dict[str, DeltaWants] = {}
        self._trust_watchers: list[Callable[[TrustAck], None]] = []
        self._trust = TrustAck(TrustPhase.UNWATCHED, None)
        self._trust_refused: TrustAck | None = None

    # -- what is served ---------------------------------------------------------------

    def update(self, secrets: Mapping[str, Entry]) -> None:
        """Serve these secrets from now on (unchanged ones are not re-sent)."""
        changed = {n: e for n, e in secrets.items() if self._desired.get(n) != e}
        if not changed:
            return
        self._desired.update(changed)
        self._engine.set_desired(SECRET_TYPE, self._desired)
        for wake in list(self._wakers):
            wake()
        self._check_trust()

    @property
    def versions(self) -> dict[str, str]:
        return {n: e.version for n, e in self._desired.items()}

    # -- whether Envoy has the trust bundle -----------------------------------------

    def trust_ack(self) -> TrustAck:
        """Where the current trust secret stands with the open streams that want it."""
        trust = self._desired.get(TRUST_SECRET)
        views = [v for state in self._sotw.values()
                 if (v := state.view(TRUST_SECRET)) is not None]
        views += [self._delta_view(sid, wants) for sid, wants in self._delta.items()
                  if wants.wants(TRUST_SECRET)]
        return trust_ack(trust.version if trust else None, views, self._trust_refused)

    def watch_trust(self, callback: Callable[[TrustAck], None]) -> None:
        """Call ``callback`` with the new verdict whenever ``trust_ack`` changes."""
        self._trust_watchers.append(callback)

    def _delta_view(self, sid: str, wants: DeltaWants) -> StreamView:
        return StreamView(self._engine.acked(sid, SECRET_TYPE).get(TRUST_SECRET),
                          self._engine.held(sid, SECRET_TYPE).get(TRUST_SECRET),
                          wants.last_error)

    def _check_trust(self) -> None:
        ack = self.trust_ack()
        if ack == self._trust:
            return
        self._trust = ack
        if ack.phase is TrustPhase.REFUSED:
            self._trust_refused = ack
        elif ack.phase is TrustPhase.APPLIED:
            self._trust_refused = None
        for callback in list(self._trust_watchers):
            callback(ack)

    # -- the server -------------------------------------------------------------------

    async def start(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a stale socket of an agent that did not stop cleanly
        server = Server([self])
        await server.start(path=str(path))
        os.chmod(path, 0o600)
        self._server, self.path = server, path
        log.info("SDS server on %s", path)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 0.5)
            self._server = None

    def __mapping__(self) -> dict[str, Handler]:
        """The service grpclib serves: Envoy's two streaming dialects of SDS."""
        async def sotw(stream: Stream[Any, Any]) -> None:
            await self.StreamSecrets(None, _Context(stream))

        async def delta(stream: Stream[Any, Any]) -> None:
            await self.DeltaSecrets(None, _Context(stream))

        return {
            SERVICE + "StreamSecrets": Handler(sotw, Cardinality.STREAM_STREAM,
                                               discovery_pb2.DiscoveryRequest,
                                               discovery_pb2.DiscoveryResponse),
            SERVICE + "DeltaSecrets": Handler(delta, Cardinality.STREAM_STREAM,
                                              discovery_pb2.DeltaDiscoveryRequest,
                                              discovery_pb2.DeltaDiscoveryResponse)}

    # -- state of the world -----------------------------------------------------------

    async def StreamSecrets(self, request_iterator: Any, context: Any) -> None:
        sid = f"sotw-{next(self._ids)}"
        state = self._sotw[sid] = SotwState()
        inbox = _Inbox(context)
        self._wakers.add(inbox.wake)
        self.streams += 1
        try:
            while True:
                item = await inbox.next(None)
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                if isinstance(item, discovery_pb2.DiscoveryRequest):
                    request = SotwRequest.from_proto(item)
                    state.on_request(request)
                    self._note_nack(state.node_id, request.error)
                response = state.pending(self._desired)
                if response is not None:
                    await context.write(response.to_proto())
                self._check_trust()
        finally:
            self.streams -= 1
            del self._sotw[sid]
            self._wakers.discard(inbox.wake)
            inbox.close()
            self._check_trust()

    # -- delta ------------------------------------------------------------------------

    async def DeltaSecrets(self, request_iterator: Any, context: Any) -> None:
        sid = f"delta-{next(self._ids)}"
        loop = asyncio.get_running_loop()
        inbox = _Inbox(context)
        self._wakers.add(inbox.wake)
        self._engine.connect(sid)
        wants = self._delta[sid] = DeltaWants()
        self.streams += 1
        try:
            while True:
                deadline = self._engine.next_deadline(sid)
                item = await inbox.next(None if deadline is None else deadline - loop.time())
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                now = loop.time()
                if isinstance(item, discovery_pb2.DeltaDiscoveryRequest):
                    try:
                        request = wire.request_from_proto(item)
                    except RemoteProtocolError as exc:
                        await context.abort("INVALID_ARGUMENT", str(exc))
                        return
                    self._note_nack(item.node.id,
                                    request.error.message if request.error else None)
                    wants.on_request(request)
                    responses = self._engine.on_request(sid, request, now)
                else:
                    responses = self._engine.pending(sid, now)
                for response in responses:
                    await context.write(wire.response_to_proto(response))
                self._check_trust()
        finally:
            self.streams -= 1
            del self._delta[sid]
            self._engine.disconnect(sid)
            self._wakers.discard(inbox.wake)
            inbox.close()
            self._check_trust()

    def _note_nack(self, node: str, error: str | None) -> None:
        if error is not None:
            self.last_nack = error
            log.warning("Envoy %s refused a secret: %s", node or "", error)
