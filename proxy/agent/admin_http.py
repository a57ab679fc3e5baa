"""The few calls the agent makes to Envoy's admin interface, on loopback, without an
HTTP client library.

The agent asks Envoy's admin two things while draining (``POST /drain_listeners`` and
``GET /stats?filter=...``); a general HTTP client (httpx pulls in its CLI's rich and
pygments at import) would be most of what a sidecar agent loads for them. A request is
one HTTP/1.1 exchange with ``Connection: close``: write the request, read to EOF, then
``parse_response`` (pure) takes the status and the body, de-chunked when Envoy sends it
chunked. Any failure to reach or understand Envoy is an ``AdminUnreachable``.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

MAX_RESPONSE = 4 << 20  # a filtered /stats answer is a few KiB; Envoy's whole is < 4 MiB


class AdminUnreachable(Exception):
    """Envoy's admin did not answer, or answered something that is not HTTP."""


@dataclass(frozen=True)
class AdminResponse:
    status: int
    text: str


def parse_response(raw: bytes) -> AdminResponse:
    """One complete HTTP/1.1 response (read to EOF) → status and body text."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise AdminUnreachable("Envoy's admin closed before a complete response head")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise AdminUnreachable(f"Envoy's admin answered {status_line[:80]!r}, not HTTP")
    headers = {k.strip().lower(): v.strip() for k, _, v in
               (line.partition(":") for line in header_lines)}
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = _dechunk(body)
    return AdminResponse(int(parts[1]), body.decode("utf-8", "replace"))


def _dechunk(body: bytes) -> bytes:
    out, rest = bytearray(), body
    while rest:
        size_line, sep, rest = rest.partition(b"\r\n")
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError:
            raise AdminUnreachable("Envoy's admin sent a malformed chunk") from None
        if not sep or size == 0:
            break
        out += rest[:size]
        rest = rest[size + 2:]
    return bytes(out)


async def request(port: int, method: str, path: str, timeout: float = 1.0,
                  host: str = "127.0.0.1") -> AdminResponse:
    """``method path`` on Envoy's admin at ``host:port``, within ``timeout`` seconds."""
    try:
        return await asyncio.wait_for(_exchange(host, port, method, path), timeout)
    except (OSError, TimeoutError) as exc:
        raise AdminUnreachable(f"Envoy's admin on {host}:{port}: "
                               f"{exc or type(exc).__name__}") from None


async def _exchange(host: str, port: int, method: str, path: str) -> AdminResponse:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                     f"Content-Length: 0\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        raw = bytearray()
        while chunk := await reader.read(65536):
            raw += chunk
            if len(raw) > MAX_RESPONSE:
                raise AdminUnreachable("Envoy's admin answered more than 4 MiB")
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return parse_response(bytes(raw))
