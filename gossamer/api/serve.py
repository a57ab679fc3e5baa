"""Running the API's ASGI app inside a control plane's own asyncio loop.

uvicorn normally owns the process (signals, exit on bind failure); here it is one task
among the control plane's others, so signal handling is left to the process and a bind
failure becomes an ``OSError`` the caller can report.

``api_tls`` decides what the API serves with: nothing on a loopback address (unless
forced), the operator's files when given, else the control plane's own serving
certificate (``gossamer.pki.serving``), whose names ``certificate_hosts`` extends with
the API's host.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Generator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI

from gossamer.api.app import warm_routes
from gossamer.pki.serving import ServingTls
from gossamer.settings import ApiSettings, is_loopback, split_addr

WILDCARDS = ("0.0.0.0", "::", "")


@dataclass(frozen=True)
class ApiTls:
    cert_file: Path
    key_file: Path


def api_tls(api: ApiSettings, api_addr: str, serving: ServingTls) -> ApiTls | None:
    """The certificate the API serves with, or ``None`` for plain HTTP on loopback."""
    if not api.serves_tls(api_addr):
        return None
    if api.tls_cert is not None and api.tls_key is not None:
        return ApiTls(api.tls_cert, api.tls_key)
    return ApiTls(serving.cert_file, serving.key_file)


def certificate_hosts(tls_hosts: tuple[str, ...], api_addr: str) -> list[str]:
    """The names the serving certificate must carry beyond its defaults (``localhost``,
    the host name, every interface address: ``gossamer.pki.serving``): ``--tls-host``
    and the API's own host when it is bound to one. A wildcard bind is reached by the
    interface addresses, already named; names only the operator knows (a DNS name, a
    NAT or load balancer address) come as ``--tls-host``."""
    host, _ = split_addr(api_addr)
    hosts = list(tls_hosts)
    if host not in WILDCARDS and not is_loopback(host) and host not in hosts:
        hosts.append(host)
    return hosts


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class ApiServer:
    def __init__(self, app: Any, addr: str, tls: ApiTls | None = None) -> None:
        ssl_files: dict[str, Any] = {}
        if tls is not None:
            ssl_files = {"ssl_certfile": str(tls.cert_file), "ssl_keyfile": str(tls.key_file)}
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False,
                                **ssl_files)
        self._app = app
        self._addr = addr
        self._tls = tls
        self._server = _EmbeddedServer(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # Bind here, so a taken port is an OSError for the caller rather than uvicorn's
        # sys.exit inside a task.
        host, port = split_addr(self._addr)
        self._check_tls()
        if isinstance(self._app, FastAPI):
            await warm_routes(self._app)
        try:
            sock = socket.create_server((host, port), reuse_port=False)
        except OSError as exc:
            raise OSError(f"the API cannot listen on {self._addr}: {exc.strerror}") from None
        # Accepted connections inherit this. asyncio sets it itself only on sockets made
        # with proto IPPROTO_TCP, and create_server's have proto 0; without it uvicorn's
        # two writes per answer (head, then body) meet Nagle and the client's delayed
        # ACK, and every small answer, /healthz included, took 40 ms more.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                with suppress(SystemExit):
                    await self._task
                raise OSError(f"the API cannot listen on {self._addr} (is the port in use?)")
            await asyncio.sleep(0.005)

    def _check_tls(self) -> None:
        """Load the pair once here, so a bad file is named rather than ending the task."""
        if self._tls is None:
            return
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
                self._tls.cert_file, self._tls.key_file)
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or exc
            raise OSError(f"the API cannot serve TLS with {self._tls.cert_file} and "
                          f"{self._tls.key_file}: {reason}") from None

    @property
    def scheme(self) -> str:
        return "https" if self._tls is not None else "http"

    @property
    def port(self) -> int:
        return int(self._server.servers[0].sockets[0].getsockname()[1])

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            with suppress(asyncio.CancelledError, SystemExit):
                await self._task

    async def wait(self) -> None:
        if self._task is not None:
            await self._task
