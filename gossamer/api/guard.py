"""The API's front door: the admin token and the body limit, before any body is read.

FastAPI resolves a route's dependencies only after it has read and parsed the body, so a
bearer check written as a dependency lets anyone make the server read, buffer and parse
whatever they send. ``ApiGuard`` is a plain ASGI middleware in front of the whole app
that decides on the request head alone:

1. a path outside ``PUBLIC_PATHS`` (and the GUI's own files) without the admin token →
   401; the GUI's sign-in cookie stands in for the token on a GUI read only
   (``gossamer.gui.session``);
2. a ``Content-Length`` over the limit → 413;
3. otherwise the app runs with a ``receive`` that counts the body as it streams in and
   stops it with 413 the moment it passes the limit (chunked bodies have no length).

An answer given before the body was read carries ``Connection: close``: the server then
drops the connection instead of reading the rest of the body to reach the next request.
"""

from __future__ import annotations

import time

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gossamer.api.auth import BearerAuth
from gossamer.api.errors import problem
from gossamer.gui.session import GuiSessions, is_static

# What needs no token: the health probes, the metrics scrape, the index (product, version,
# mode) and the API's own description (the same for every installation).
PUBLIC_PATHS = frozenset({"/", "/healthz", "/readyz", "/metrics", "/openapi.json", "/docs",
                          "/docs/oauth2-redirect"})


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when the streamed body passes the limit.

    An ``HTTPException`` because FastAPI re-raises those from its body parsing (anything
    else it turns into a 400), so the app's own error handler answers 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, too_large(limit))


def too_large(limit: int) -> str:
    return f"the request body is larger than this API's limit of {_show(limit)} (--api-max-body)"


def _show(size: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift and size % (1 << shift) == 0:
            return f"{size >> shift} {unit}"
    return f"{size} bytes"


def content_length(scope: Scope) -> int | None:
    """The declared length, or ``None`` (absent; the server already refused a malformed one)."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def authorization(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            return bytes(value).decode("latin-1")
    return ""


class ApiGuard:
    """ASGI middleware: ``ApiGuard(app, admin_token=..., max_body=...)``."""

    def __init__(self, app: ASGIApp, admin_token: str, max_body: int) -> None:
        self.app = app
        self.auth = BearerAuth(admin_token)
        self.max_body = max_body
        self.gui = GuiSessions(admin_token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path not in PUBLIC_PATHS and not is_static(path):
            refusal = self.auth.refusal(authorization(scope))
            if refusal is not None and not self.gui.authorizes(
                    scope["method"], dict(scope.get("headers", ())), time.time()):
                await _answer(scope, receive, send, 401, "unauthorized", refusal)
                return
        length = content_length(scope)
        if length is not None and length > self.max_body:
            await _answer(scope, receive, send, 413, "content too large",
                          too_large(self.max_body))
            return
        await self._run(scope, receive, send)

    async def _run(self, scope: Scope, receive: Receive, send: Send) -> None:
        received = 0
        tripped = False

        async def counting_receive() -> Message:
            nonlocal received, tripped
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    tripped = True
                    raise BodyTooLarge(self.max_body)
            return message

        started = False

        async def closing_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if tripped:  # the rest of an oversized body is never read: close
                    message = {**message, "headers": [*message.get("headers", ()),
                                                      (b"connection", b"close")]}
            await send(message)

        try:
            await self.app(scope, counting_receive, closing_send)
        except BodyTooLarge:
            # Raised outside FastAPI's body parsing (a route reading the stream itself).
            if started:
                raise
            await _answer(scope, receive, send, 413, "content too large",
                          too_large(self.max_body))


async def _answer(scope: Scope, receive: Receive, send: Send, status: int, title: str,
                  detail: str) -> None:
    response = problem(status, title, detail)
    response.headers["connection"] = "close"
    await response(scope, receive, send)
