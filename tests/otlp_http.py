"""An OTLP/HTTP trace receiver (``POST /v1/traces``, protobuf) beside the suite's
OTLP/gRPC one (``tests.dataplane_apps.OtlpReceiver``), keeping spans in the same shape.

A stdlib HTTP server in a thread: it decodes each ``ExportTraceServiceRequest`` with
``opentelemetry-proto`` and answers an empty ``ExportTraceServiceResponse``, as a collector
does; anything else gets 404 (another path) or 400 (a body that does not decode).
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from tests.dataplane_apps import Span


def spans_of(request: Any) -> list[Span]:
    """The spans of an ``ExportTraceServiceRequest``, with their resource's service."""
    out = []
    for resource_spans in request.resource_spans:
        attrs = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
        for scope in resource_spans.scope_spans:
            out.extend(Span(service=attrs.get("service.name", ""), name=s.name, kind=s.kind,
                            trace_id=s.trace_id.hex(), span_id=s.span_id.hex(),
                            parent_id=s.parent_span_id.hex()) for s in scope.spans)
    return out


class OtlpHttpReceiver:
    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.resources: list[dict[str, str]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path != "/v1/traces":
                    self.send_response(404)
                    self.end_headers()
                    return
                request = trace_service_pb2.ExportTraceServiceRequest()
                try:
                    request.ParseFromString(body)
                except DecodeError:
                    self.send_response(400)
                    self.end_headers()
                    return
                receiver.resources.extend(
                    {a.key: a.value.string_value for a in rs.resource.attributes}
                    for rs in request.resource_spans)
                receiver.spans.extend(spans_of(request))
                answer = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> OtlpHttpReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
