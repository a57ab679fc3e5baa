"""The CLI's standard-library transport against a real local HTTP server: one connection
kept across requests, a connection the server closed while idle reopened once, the
environment's proxy (and ``no_proxy``) honoured, bounded answers.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cli import http_wire
from cli.http_wire import HttpRequest, StdlibTransport, proxy_for


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:
        self.server.seen.append((self.client_address[1], self.path,
                                 self.headers.get("Authorization")))
        body = json.dumps({"path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        if self.server.close_after_each:
            self.close_connection = True

    def log_message(self, *_: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    seen: list[tuple[int, str, str | None]]
    close_after_each = False


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.seen = []
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _url(srv: _Server, path: str) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}{path}"


def test_one_connection_carries_every_page(server: _Server) -> None:
    wire = StdlibTransport(None)
    for page in range(3):
        resp = wire.send(HttpRequest("GET", _url(server, f"/meshes?offset={page}"),
                                     {"Authorization": "Bearer t"}))
        assert resp.status == 200 and resp.json() == {"path": f"/meshes?offset={page}"}
    wire.close()
    assert [path for _, path, _ in server.seen] == [f"/meshes?offset={i}" for i in range(3)]
    assert {auth for _, _, auth in server.seen} == {"Bearer t"}
    assert len({port for port, _, _ in server.seen}) == 1  # the same client socket


def test_a_connection_the_server_closed_is_reopened_once(server: _Server) -> None:
    server.close_after_each = True
    wire = StdlibTransport(None)
    first = wire.send(HttpRequest("GET", _url(server, "/a")))
    second = wire.send(HttpRequest("GET", _url(server, "/b")))
    assert (first.status, second.status) == (200, 200)
    assert len({port for port, _, _ in server.seen}) == 2


def test_a_refused_connection_is_an_oserror_for_the_client_to_word() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectionRefusedError):
        StdlibTransport(None).send(HttpRequest("GET", f"http://127.0.0.1:{port}/"))


def test_an_answer_beyond_the_bound_is_refused(server: _Server,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_wire, "MAX_BODY_BYTES", 8)
    with pytest.raises(http.client.HTTPException, match="larger than"):
        StdlibTransport(None).send(HttpRequest("GET", _url(server, "/long-enough")))


def test_a_plain_http_proxy_gets_the_whole_url(server: _Server) -> None:
    env = {"http_proxy": f"http://127.0.0.1:{server.server_address[1]}"}
    wire = StdlibTransport(None, env=env)
    resp = wire.send(HttpRequest("GET", "http://cp.example.test:5681/meshes"))
    assert resp.json() == {"path": "http://cp.example.test:5681/meshes"}


@pytest.mark.parametrize(("env", "host", "expected"), [
    ({}, "cp.example.com", None),
    ({"https_proxy": "http://proxy:3128"}, "cp.example.com", ("proxy", 3128)),
    ({"HTTPS_PROXY": "proxy.corp"}, "cp.example.com", ("proxy.corp", 8080)),
    ({"https_proxy": "http://proxy:3128", "no_proxy": "example.com"}, "cp.example.com", None),
    ({"https_proxy": "http://proxy:3128", "NO_PROXY": ".example.com"}, "example.com", None),
    ({"https_proxy": "http://proxy:3128", "no_proxy": "*"}, "anything", None),
    ({"https_proxy": "http://proxy:3128", "no_proxy": "other.com"}, "cp.example.com",
     ("proxy", 3128)),
    ({"https_proxy": "http://proxy:3128"}, "127.0.0.1", None),
])
def test_proxy_for(env: dict[str, str], host: str, expected: tuple[str, int] | None) -> None:
    assert proxy_for("https", host, env) == expected
