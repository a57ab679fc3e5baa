"""The CLI's HTTP/1.1 transport over the standard library's ``http.client``.

The CLI makes a handful of requests per run to one control plane, so what it needs from
an HTTP client is small: keep the connection open across a list's pages, verify TLS,
bound connect and read time, go through the ``https_proxy``/``http_proxy`` the
environment names (``no_proxy`` honoured). ``http.client`` does all of that and is
already loaded by the interpreter's ``ssl``; a third-party client cost more start-up time
than the rest of ``gossamer get`` together (docs/benchmarks.md, "CLI start-up").

``Transport`` is the seam tests replace (``Runtime.transport``): ``send`` takes one
``HttpRequest`` and returns one ``HttpResponse``; failures on the wire raise ``OSError``
(``TimeoutError`` for a timeout, ``ssl.SSLError`` for TLS) or ``http.client``'s
``HTTPException``, which ``cli.client`` turns into the user's error.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

MAX_BODY_BYTES = 256 << 20  # an answer larger than this is not one the API gives


@dataclass(frozen=True)
class Timeouts:
    connect: float = 5.0
    read: float = 60.0


@dataclass(frozen=True)
class HttpRequest:
    method: str
    url: str  # absolute: scheme://host:port/path?query
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None


@dataclass(frozen=True)
class HttpResponse:
    status: int
    reason: str
    headers: Mapping[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body as JSON; ``ValueError`` when it is not."""
        return json.loads(self.body)


class Transport(Protocol):
    def send(self, request: HttpRequest) -> HttpResponse: ...

    def close(self) -> None: ...


def _no_proxy(host: str, env: Mapping[str, str]) -> bool:
    raw = env.get("no_proxy") or env.get("NO_PROXY") or ""
    for entry in (e.strip().lower() for e in raw.split(",")):
        if entry == "*":
            return True
        entry = entry.lstrip(".")
        if entry and (host == entry or host.endswith("." + entry)):
            return True
    return False


def proxy_for(scheme: str, host: str, env: Mapping[str, str]) -> tuple[str, int] | None:
    """The (host, port) of the proxy the environment names for ``scheme``, if any."""
    if host.lower() in ("localhost", "127.0.0.1", "::1") or _no_proxy(host.lower(), env):
        return None
    raw = env.get(f"{scheme}_proxy") or env.get(f"{scheme.upper()}_PROXY")
    if not raw:
        return None
    parts = urlsplit(raw if "://" in raw else f"http://{raw}")
    if not parts.hostname:
        return None
    return parts.hostname, parts.port or 8080


class StdlibTransport:
    """One kept-alive connection to the control plane's origin, opened on first use."""

    def __init__(self, tls: ssl.SSLContext | None, timeouts: Timeouts = Timeouts(),
                 env: Mapping[str, str] | None = None) -> None:
        self._tls = tls
        self._timeouts = timeouts
        self._env = os.environ if env is None else env
        self._conn: http.client.HTTPConnection | None = None
        self._origin: tuple[str, str, int] | None = None
        self._absolute = False  # a plain-HTTP proxy wants the whole URL in the request line

    def send(self, request: HttpRequest) -> HttpResponse:
        parts = urlsplit(request.url)
        scheme, host = parts.scheme, parts.hostname or ""
        port = parts.port or (443 if scheme == "https" else 80)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        reused = self._conn is not None and self._origin == (scheme, host, port)
        conn = self._connection(scheme, host, port)
        if self._absolute:
            target = f"{scheme}://{parts.netloc}{target}"
        try:
            return self._exchange(conn, request, target)
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            self.close()
            if not reused:
                raise
            # The server closed the kept-alive connection while it was idle: the request
            # never reached it, so sending it once more on a new connection is safe.
            conn = self._connection(scheme, host, port)
            return self._exchange(conn, request, target)

    def _exchange(self, conn: http.client.HTTPConnection, request: HttpRequest,
                  target: str) -> HttpResponse:
        headers = dict(request.headers)
        if request.body is not None:
            headers.setdefault("Content-Type", "application/json")
        conn.request(request.method, target, body=request.body, headers=headers)
        resp = conn.getresponse()
        body = resp.read(MAX_BODY_BYTES + 1)
        if len(body) > MAX_BODY_BYTES:
            self.close()
            raise http.client.HTTPException(
                f"the answer is larger than {MAX_BODY_BYTES >> 20} MiB")
        if resp.will_close:
            self.close()
        return HttpResponse(resp.status, resp.reason,
                            {k.lower(): v for k, v in resp.getheaders()}, body)

    def _connection(self, scheme: str, host: str, port: int) -> http.client.HTTPConnection:
        if self._conn is not None and self._origin == (scheme, host, port):
            return self._conn
        self.close()
        proxy = proxy_for(scheme, host, self._env)
        self._absolute = proxy is not None and scheme == "http"
        dial_host, dial_port = proxy or (host, port)
        conn: http.client.HTTPConnection
        if scheme == "https":
            conn = http.client.HTTPSConnection(dial_host, dial_port,
                                               timeout=self._timeouts.connect,
                                               context=self._tls)
            if proxy is not None:
                conn.set_tunnel(host, port)
        else:
            conn = http.client.HTTPConnection(dial_host, dial_port,
                                              timeout=self._timeouts.connect)
        conn.connect()  # within the connect timeout; then reads get theirs
        if conn.sock is not None:
            conn.sock.settimeout(self._timeouts.read)
        self._conn, self._origin = conn, (scheme, host, port)
        return conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn, self._origin = None, None
