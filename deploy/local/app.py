"""The demo's application: an HTTP server that says who answered.

``python -m deploy.local.app --service backend --instance backend-1 --zone east`` answers
every GET with one line naming its service, instance and zone, plus a JSON copy in the
``x-served-by`` header, so a caller (and a test) can tell which zone served a request.
It listens on 127.0.0.1 only: the sidecar's inbound is the way in from the mesh.
"""

from __future__ import annotations

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from deploy.local.topology import APP_PORT


def answer(service: str, instance: str, zone: str) -> str:
    return f"{service}: served by {instance} in zone {zone}\n"


def parse_answer(text: str) -> tuple[str, str, str] | None:
    """(service, instance, zone) from an ``answer``, None if ``text`` is not one."""
    head, sep, rest = text.strip().partition(": served by ")
    instance, sep2, zone = rest.partition(" in zone ")
    if not (sep and sep2 and head and instance and zone):
        return None
    return head, instance, zone


def handler(service: str, instance: str, zone: str) -> type[BaseHTTPRequestHandler]:
    body = answer(service, instance, zone).encode()
    served_by = json.dumps({"service": service, "instance": instance, "zone": zone})

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes; without TCP_NODELAY the second waits for
        # the sidecar's delayed ACK, about 40 ms per request on a kept-alive connection.
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/plain")
            self.send_header("content-length", str(len(body)))
            self.send_header("x-served-by", served_by)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # one line per request would drown the log; Envoy logs requests

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--service", required=True)
    parser.add_argument("--instance", required=True)
    parser.add_argument("--zone", required=True)
    parser.add_argument("--port", type=int, default=APP_PORT)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port),
                                 handler(args.service, args.instance, args.zone))
    server.daemon_threads = True
    print(f"{args.instance} ({args.service}, zone {args.zone}) on 127.0.0.1:{args.port}",
          flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
