"""The agent's gRPC, on grpclib: the zone CP's agent API as a client and SDS as a server.

Why grpclib rather than grpcio (which the control planes use, on the same wire): grpcio's
C core keeps about 14 MB of its library resident plus its own threads in every process
that loads it, and a sidecar agent runs beside every workload (issue 17); grpclib is
pure Python on asyncio and ``h2``, a few MB. The agent makes two calls and serves one
service, so the few things grpcio did for it are written here:

* TLS: the context verifies the CP's certificate against ``--cp-ca`` only (no system
  roots) and its name or IP against the host in ``--cp`` (``check_hostname``), with ALPN
  ``h2`` as gRPC requires.
* Errors: every failure of a call becomes one ``RpcError`` (a gRPC status name and the
  reason): a status the CP sent keeps its code; a connection refused, reset or a TLS
  handshake that did not verify is ``UNAVAILABLE`` with the reason's text, which
  ``gossamer.pki.dial_errors`` reads; a deadline is ``DEADLINE_EXCEEDED``.
* ``BidiCall``: a bidirectional stream with grpcio's shape (``write``, ``read`` returning
  ``EOF`` at the end, ``cancel``), so ``Session`` reads the same either way.

The service paths are those of the ``.proto`` files (``sync/v1/agent.proto``, Envoy's
``SecretDiscoveryService``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any

import h2.exceptions
from grpclib.client import Channel, Stream
from grpclib.config import Configuration
from grpclib.const import Cardinality, Status
from grpclib.encoding.proto import ProtoCodec
from grpclib.exceptions import GRPCError, ProtocolError, StreamTerminatedError
from grpclib.metadata import decode_grpc_message

AGENT_SERVICE = "/gossamer.sync.v1.Agent/"
MAX_MESSAGE = 16 << 20
EOF = object()  # what ``BidiCall.read`` returns once the server ended the stream


class RpcError(Exception):
    """A call that failed: ``code`` is a gRPC status name (``UNAVAILABLE``, ...)."""

    def __init__(self, code: str, details: str) -> None:
        super().__init__(f"{code}: {details}")
        self.code = code
        self.details = details


def rpc_error(exc: BaseException) -> RpcError | None:
    """``exc`` as an ``RpcError``, or None if it is not a failure of the call."""
    if isinstance(exc, GRPCError):
        return RpcError(exc.status.name, exc.message or "")
    if isinstance(exc, TimeoutError):
        return RpcError("DEADLINE_EXCEEDED", "the call took too long")
    if isinstance(exc, StreamTerminatedError | ProtocolError | h2.exceptions.ProtocolError):
        return RpcError("UNAVAILABLE", f"the stream broke: {exc}")
    if isinstance(exc, OSError):  # refused, reset, a TLS handshake that did not verify
        return RpcError("UNAVAILABLE", str(exc) or type(exc).__name__)
    return None


def status_sent(stream: Stream[Any, Any]) -> RpcError | None:
    """The status the server sent on ``stream`` before it reset it, if not OK.

    grpcio's server answers a refused call with its status in the headers and then
    resets the stream; grpclib raises the reset (``StreamTerminatedError``) on whatever
    the agent was doing, and the CP's reason ("the token has expired") would be lost.
    grpclib keeps the headers it received on its protocol stream (``_stream``: private,
    hence the pinned minor version)."""
    inner = getattr(stream, "_stream", None)
    for headers in (getattr(inner, "trailers", None), getattr(inner, "headers", None)):
        fields = dict(headers or ())
        code = fields.get("grpc-status")
        if code is None or code == "0":
            continue
        try:
            name = Status(int(code)).name
        except ValueError:
            name = "UNKNOWN"
        return RpcError(name, decode_grpc_message(fields.get("grpc-message", "")))
    return None


@contextlib.contextmanager
def boundary(stream: Stream[Any, Any] | None = None) -> Any:
    """Translate what a call raises into ``RpcError`` (the status ``stream`` carried, if
    the server sent one before it broke the stream)."""
    try:
        yield
    except RpcError:
        raise
    except Exception as exc:
        failure = rpc_error(exc)
        if failure is None:
            raise
        if failure.code == "UNAVAILABLE" and stream is not None:
            failure = status_sent(stream) or failure
        raise failure from None


class BoundedCodec(ProtoCodec):
    """Protobuf, refusing a message over ``MAX_MESSAGE`` (grpcio's limit was set to the
    same 16 MiB). grpclib has no limit of its own and checks here only once the message
    arrived; the peer is the CP, authenticated by ``--cp-ca``."""

    def decode(self, data: bytes, message_type: Any) -> Any:
        if len(data) > MAX_MESSAGE:
            raise GRPCError(Status.RESOURCE_EXHAUSTED,
                            f"a message of {len(data)} bytes, over {MAX_MESSAGE}")
        return super().decode(data, message_type)


def tls_context(ca_pem: bytes) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=ca_pem.decode())
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["h2"])
    return context


def channel(host: str, port: int, ca_pem: bytes) -> Channel:
    """A TLS channel to ``host:port`` verified against ``ca_pem``, with HTTP/2 keepalive
    pings so that a dead path is noticed between the Session's own heartbeats."""
    config = Configuration(_keepalive_time=30.0, _keepalive_timeout=10.0,
                           _keepalive_permit_without_calls=False)
    return Channel(host, port, ssl=tls_context(ca_pem), config=config, codec=BoundedCodec())


async def unary(ch: Channel, method: str, request: Any, reply_type: type, *,
                metadata: Any, timeout: float) -> Any:
    call: Stream[Any, Any] = ch.request(AGENT_SERVICE + method, Cardinality.UNARY_UNARY,
                                        type(request), reply_type, metadata=metadata,
                                        timeout=timeout)
    with boundary(call):
        async with call as stream:
            await stream.send_message(request, end=True)
            reply = await stream.recv_message()
            await stream.recv_trailing_metadata()
    if reply is None:
        raise RpcError("INTERNAL", "the control plane answered nothing")
    return reply


class BidiCall:
    """One bidirectional stream, opened on the first ``write``."""

    def __init__(self, ch: Channel, method: str, request_type: type, reply_type: type,
                 metadata: Any) -> None:
        self._stream: Stream[Any, Any] = ch.request(
            AGENT_SERVICE + method, Cardinality.STREAM_STREAM, request_type, reply_type,
            metadata=metadata)
        self._opened = False
        self._closing: asyncio.Task[None] | None = None

    async def write(self, message: Any) -> None:
        with boundary(self._stream):
            if not self._opened:
                await self._stream.__aenter__()
                self._opened = True
                await self._stream.send_request()
            await self._stream.send_message(message)

    async def read(self) -> Any:
        with boundary(self._stream):
            message = await self._stream.recv_message()
            if message is None:
                await self._stream.recv_trailing_metadata()  # a status other than OK raises
                return EOF
        return message

    def cancel(self) -> None:
        """End the stream (RST_STREAM) and release it, without waiting."""
        if self._opened and self._closing is None:
            self._closing = asyncio.ensure_future(self._close())

    async def _close(self) -> None:
        with contextlib.suppress(Exception):  # the stream may have broken already
            await self._stream.cancel()
        with contextlib.suppress(Exception):
            await self._stream.__aexit__(None, None, None)
