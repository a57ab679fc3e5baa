"""The test applications behind the sidecars of ``tests/dataplane_env.py``, and the
clients that call them through Envoy.

The applications run in threads so the tests' event loop (which also runs the zone CP)
never blocks on them:

- ``HttpApp``: answers JSON ``{"instance", "path", "headers"}``; ``/flaky`` fails every
  other request with 503 (per instance), ``/slow/<ms>`` answers after ``ms``,
  ``/fail-on/<instance>`` is 503 on that instance only, ``/health`` answers
  ``health_status``; it counts requests per path.
- ``EchoApp``: a TCP service that answers each read with ``<instance>:<data>``.
- ``OtlpReceiver``: an OTLP/gRPC trace receiver (``TraceServiceServicer``) that keeps
  every span it is sent, with its resource's ``service.name``.

``listen_port`` hands out free ports; ``request``/``requests`` (HTTP) and ``echo`` (TCP)
call a listener and return what answered (``statuses``, ``instances``).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import random
import socket
import socketserver
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

_handed_out: set[int] = set()


def listen_port() -> int:
    """A free port below the kernel's ephemeral range (32768 up), for something that
    will listen on it. ``test_agent.free_port`` returns an ephemeral port, which any
    outgoing connection (an Envoy's to the zone CP, to another sidecar) may take before
    the Envoy meant to listen there binds it."""
    while True:
        port = random.randint(20000, 32000)
        if port in _handed_out:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in two writes: with Nagle, the body waits for the peer's
    # delayed ACK of the headers (40 ms a request).
    disable_nagle_algorithm = True
    server: _HttpServer

    def do_GET(self) -> None:
        self.server.app.handle(self)

    do_POST = do_GET

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


class _HttpServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    app: HttpApp

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (a timeout, an abort) closes its connection mid-answer.
        pass


class HttpApp:
    """A test HTTP application named ``name`` (see the module docstring)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.health_status = 200
        self.hits: Counter[str] = Counter()
        self.last_headers: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()
        self._server = _HttpServer(("127.0.0.1", 0), _Handler)
        self._server.app = self
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name=f"app-{name}")

    def start(self) -> HttpApp:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def reset(self) -> None:
        with self._lock:
            self.hits.clear()
            self.last_headers.clear()
            self.health_status = 200

    def handle(self, request: _Handler) -> None:
        path = request.path.split("?")[0]
        key = "/" + path.strip("/").split("/")[0]
        headers = {k.lower(): v for k, v in request.headers.items()}
        length = int(headers.get("content-length") or 0)
        if length:
            request.rfile.read(length)
        with self._lock:
            self.hits[key] += 1
            count = self.hits[key]
            self.last_headers[path] = headers
        status = self._status(path, key, count)
        body = json.dumps({"instance": self.name, "path": request.path,
                           "headers": headers}).encode()
        request.send_response(status)
        request.send_header("content-type", "application/json")
        request.send_header("content-length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    def _status(self, path: str, key: str, count: int) -> int:
        parts = path.strip("/").split("/")
        if key == "/flaky":
            return 503 if count % 2 == 1 else 200
        if key == "/slow" and len(parts) > 1:
            time.sleep(int(parts[1]) / 1000)
        if key == "/fail-on" and len(parts) > 1 and parts[1] == self.name:
            return 503
        if key == "/health":
            return self.health_status
        return 200


class _EchoHandler(socketserver.BaseRequestHandler):
    server: _EchoServer

    def handle(self) -> None:
        while data := self.request.recv(4096):
            self.request.sendall(self.server.instance.encode() + b":" + data)


class _EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    instance = ""


class EchoApp:
    """A TCP echo service that prefixes every answer with its instance name."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._server = _EchoServer(("127.0.0.1", 0), _EchoHandler)
        self._server.instance = name
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name=f"echo-{name}")

    def start(self) -> EchoApp:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_id: str


class OtlpReceiver(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace receiver on 127.0.0.1 that keeps what it is sent."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.port = 0
        self._server: Any = None

    async def start(self) -> OtlpReceiver:
        self._server = grpc.aio.server()
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()
        return self

    async def stop(self) -> None:
        await self._server.stop(grace=0)

    async def Export(self, request: Any, context: Any) -> Any:
        for resource_spans in request.resource_spans:
            attrs = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope in resource_spans.scope_spans:
                self.spans.extend(Span(
                    service=attrs.get("service.name", ""), name=s.name, kind=s.kind,
                    trace_id=s.trace_id.hex(), span_id=s.span_id.hex(),
                    parent_id=s.parent_span_id.hex()) for s in scope.spans)
        return trace_service_pb2.ExportTraceServiceResponse()


@dataclass(frozen=True)
class Reply:
    status: int
    instance: str
    body: dict[str, Any]
    headers: httpx.Headers
    elapsed: float


async def request(client: httpx.AsyncClient, port: int, path: str = "/",
                  headers: dict[str, str] | None = None) -> Reply:
    started = time.monotonic()
    response = await client.get(f"http://127.0.0.1:{port}{path}", headers=headers)
    elapsed = time.monotonic() - started
    try:
        body = response.json()
    except ValueError:
        body = {"text": response.text}
    instance = body.get("instance", "") if isinstance(body, dict) else ""
    return Reply(response.status_code, instance, body, response.headers, elapsed)


async def requests(port: int, path: str = "/", count: int = 1,
                   headers: dict[str, str] | None = None, timeout: float = 5.0) -> list[Reply]:
    """``count`` sequential requests over one keep-alive client."""
    async with httpx.AsyncClient(timeout=timeout) as client:
        return [await request(client, port, path, headers) for _ in range(count)]


async def echo(port: int, data: bytes = b"ping") -> bytes:
    """One TCP connection: send ``data``, return the answer."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(4096), 5)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def statuses(replies: Iterable[Reply]) -> Counter[int]:
    return Counter(r.status for r in replies)


def instances(replies: Iterable[Reply]) -> Counter[str]:
    return Counter(r.instance for r in replies if r.status == 200)

