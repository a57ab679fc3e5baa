"""The asyncio shells that run the delta engine and the mirror over one gRPC stream.

``publish`` drives an ``Engine`` session (requests in, responses out) and ``subscribe``
drives a ``Mirror`` (responses in, ACK/NACK requests out). Both are written against
``MessageStream`` — ``read()`` returning ``None`` or ``grpc.aio.EOF`` at the end,
``write(msg)`` — which a grpc.aio server context and a client call both provide, so the
same shells serve both ends of both zone-sync RPCs and Envoy's delta ADS (``zone_cp.xds``).

Both ends send an application heartbeat (a message whose type URL is ``HEARTBEAT``)
every ``interval`` and tear the stream down (``StreamStalled``) when nothing has arrived
for ``timeout``: a half-dead stream never looks connected. This module holds the timers,
the queue and the task, and nothing else: all protocol decisions are the engine's and
the mirror's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from envoy.service.discovery.v3 import discovery_pb2
from opentelemetry import trace

from gossamer.fifo import Fifo
from sync import wire
from sync.bounds import Bounds, PeerLimitExceeded
from sync.client_state import Applied, Mirror
from sync.engine import Engine
from sync.errors import SyncError
from sync.messages import Response

log = logging.getLogger(__name__)
tracer = trace.get_tracer("gossamer.sync")

HEARTBEAT = "gossamer.io/heartbeat"


class StreamStalled(SyncError):
    """Nothing arrived within the heartbeat timeout: the peer or the path is dead."""

    retryable = True


class MessageStream(Protocol):
    async def read(self) -> Any: ...

    async def write(self, message: Any) -> None: ...


@dataclass(frozen=True)
class Heartbeats:
    """``None`` turns a side off: Envoy neither sends nor understands our heartbeats."""

    interval: float | None = 5.0
    timeout: float | None = 15.0


NO_HEARTBEATS = Heartbeats(interval=None, timeout=None)


Clock = Callable[[], float]
_WAKE = object()
_TIMEOUT = object()


class _Inbox:
    """Messages from the stream and wake-ups from the publisher, in one queue.

    The reader runs on its own task, so ``last_arrival`` moves whenever anything arrives,
    even while the loop is busy persisting a large delta: a slow consumer is not a dead
    peer. Heartbeats only move ``last_arrival``; they are not queued. At most
    ``max_queued`` messages wait: a peer that sends faster than it is served (no
    well-behaved one does: each side answers before the other sends again) has its
    stream ended with ``PeerLimitExceeded`` rather than growing the queue. Wake-ups are
    coalesced, so the queue holds at most one. The queue is a ``gossamer.fifo.Fifo``
    (one reader, the stream's loop), not an ``asyncio.Queue``: a zone CP holds one per
    connected Envoy.
    """

    def __init__(self, stream: MessageStream, clock: Clock,
                 max_queued: int = Bounds().max_queued) -> None:
        self.queue: Fifo[Any] = Fifo()
        self._stream = stream
        self._clock = clock
        self._max_queued = max_queued
        self._wake_queued = False
        self.last_arrival = clock()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            while True:
                message = await self._stream.read()
                if message is None or message is grpc.aio.EOF:
                    self.queue.put_nowait(None)
                    return
                self.last_arrival = self._clock()
                if message.type_url == HEARTBEAT:
                    continue
                if self.queue.qsize() - self._wake_queued >= self._max_queued:
                    raise PeerLimitExceeded(f"more than {self._max_queued} messages from the "
                                            "peer wait to be handled; send each request "
                                            "after the answer to the previous one")
                self.queue.put_nowait(message)
                message = None  # the queue has it: not held here while the next is read
        except Exception as exc:
            self.queue.put_nowait(exc)

    def wake(self) -> None:
        if not self._wake_queued:
            self._wake_queued = True
            self.queue.put_nowait(_WAKE)

    async def next(self, timeout: float | None) -> Any:
        # Not asyncio.wait_for: before Python 3.12 it swallows a cancellation that
        # arrives as the queue delivers, and the stream would outlive its cancelled task.
        try:
            async with asyncio.timeout(None if timeout is None else max(timeout, 0.0)):
                item = await self.queue.get()
        except TimeoutError:
            return _TIMEOUT
        if item is _WAKE:
            self._wake_queued = False
        return item

    async def ending(self, wait: float = 1.0) -> BaseException:
        """Why the stream ended, once a write found it finished: the reader's error if it
        has one (gRPC's status, with the peer's reason), else a plain "closed"."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await asyncio.shield(self._reader)
        while not self.queue.empty():
            item = self.queue.get_nowait()
            if isinstance(item, BaseException):
                return item
        return SyncError("the peer closed the stream")

    def close(self) -> None:
        self._reader.cancel()


def abort_status(exc: BaseException) -> grpc.StatusCode | None:
    """The status to end a server stream with when ``exc`` ended it by the peer's fault
    (a broken protocol, a bound exceeded), else None (the peer went away, or our side
    failed: nothing useful to tell it)."""
    if isinstance(exc, SyncError) and exc.caller_fault:
        return grpc.StatusCode[exc.grpc_status]
    return None


async def _write(stream: MessageStream, inbox: _Inbox, message: Any) -> None:
    try:
        await stream.write(message)
    except asyncio.InvalidStateError:
        # grpc.aio refuses writes to an RPC that already finished (the peer ended it, or
        # the connection failed) with a bare asyncio error; report why it finished.
        raise await inbox.ending() from None


async def _heartbeats(write: Callable[[Any], Awaitable[None]], heartbeat: Any,
                      interval: float) -> None:
    while True:
        await write(heartbeat)
        await asyncio.sleep(interval)


async def _loop(stream: MessageStream, inbox: _Inbox, beats: Heartbeats, clock: Clock,
                heartbeat: Any, handle: Callable[[Any, float], Awaitable[list[Any]]],
                deadline: Callable[[], float | None]) -> None:
    lock = asyncio.Lock()  # one writer at a time: the loop and the heartbeat task

    async def write(message: Any) -> None:
        async with lock:
            await _write(stream, inbox, message)

    beating = (asyncio.create_task(_heartbeats(write, heartbeat, beats.interval))
               if beats.interval else None)
    try:
        while True:
            due = [] if beats.timeout is None else [inbox.last_arrival + beats.timeout]
            extra = deadline()
            if extra is not None:
                due.append(extra)
            item = await inbox.next(min(due) - clock() if due else None)
            if item is None:
                raise SyncError("the peer closed the stream")
            if isinstance(item, BaseException):
                raise item
            now = clock()
            if beats.timeout is not None and now - inbox.last_arrival > beats.timeout:
                raise StreamStalled(f"nothing received for {beats.timeout:g}s")
            for out in await handle(item, now):
                await write(out)
            # Hold no message while waiting for the next: a zone CP serves thousands of
            # streams, each would keep its last request and response (KiB of protobuf).
            item = out = None
            if beating is not None and beating.done():
                beating.result()  # a failed heartbeat write ends the stream
    finally:
        if beating is not None:
            beating.cancel()


async def publish(engine: Engine, sid: str, stream: MessageStream,
                  subscribe_changes: Callable[[Callable[[], None]], Callable[[], None]],
                  beats: Heartbeats = Heartbeats(), clock: Clock | None = None) -> None:
    """Serve one subscriber until the stream ends or stalls (then raise).

    ``subscribe_changes(wake)`` registers ``wake`` to be called whenever the engine's
    desired state changed and returns a function that unregisters it.
    """
    clock = clock or asyncio.get_running_loop().time
    inbox = _Inbox(stream, clock, engine.bounds.max_queued)
    unsubscribe = subscribe_changes(inbox.wake)
    engine.connect(sid)

    async def handle(item: Any, now: float) -> list[Any]:
        if isinstance(item, discovery_pb2.DeltaDiscoveryRequest):
            responses = engine.on_request(sid, wire.request_from_proto(item), now)
        else:
            responses = engine.pending(sid, now)
        out = []
        for response in responses:
            with tracer.start_as_current_span("sync.delta.send", attributes={
                    "sync.subscriber": sid, "sync.type": response.type_url,
                    "sync.updated": len(response.resources),
                    "sync.removed": len(response.removed)}):
                out.append(wire.response_to_proto(response))
        return out

    try:
        await _loop(stream, inbox, beats, clock,
                    discovery_pb2.DeltaDiscoveryResponse(type_url=HEARTBEAT), handle,
                    lambda: engine.next_deadline(sid))
    finally:
        unsubscribe()
        engine.disconnect(sid)
        inbox.close()


async def subscribe(mirror: Mirror, stream: MessageStream,
                    on_applied: Callable[[Applied], Awaitable[None]],
                    beats: Heartbeats = Heartbeats(), clock: Clock | None = None,
                    prepare: Callable[[Response], Awaitable[None]] | None = None) -> None:
    """Keep ``mirror`` in sync from one stream until it ends or stalls (then raise).

    ``on_applied`` persists each change before it is acknowledged: if it raises, the
    stream ends unacknowledged and the publisher resends after the reconnect.
    ``prepare`` is awaited with each response before the mirror takes it: work on its
    entries that can give the loop turns (``sync.applier.Decoded``), which the mirror's
    own pure, synchronous check cannot.
    """
    clock = clock or asyncio.get_running_loop().time
    inbox = _Inbox(stream, clock)

    async def handle(item: Any, now: float) -> list[Any]:
        if not isinstance(item, discovery_pb2.DeltaDiscoveryResponse):
            return []
        with tracer.start_as_current_span("sync.delta.apply") as span:
            response = wire.response_from_proto(item)
            if prepare is not None:
                await prepare(response)
            applied = mirror.on_response(response)
            span.set_attributes({"sync.type": applied.type_url,
                                 "sync.updated": len(applied.updated),
                                 "sync.removed": len(applied.removed),
                                 "sync.rejected": len(applied.rejected)})
            await on_applied(applied)
        return [wire.request_to_proto(applied.reply)]

    try:
        for request in mirror.initial_requests():
            await _write(stream, inbox, wire.request_to_proto(request))
        await _loop(stream, inbox, beats, clock,
                    discovery_pb2.DeltaDiscoveryRequest(type_url=HEARTBEAT), handle,
                    lambda: None)
    finally:
        inbox.close()
