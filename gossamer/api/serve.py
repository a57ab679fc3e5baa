"""Running the API's ASGI app inside a control plane's own asyncio loop.

uvicorn normally owns the process (signals, exit on bind failure); here it is one task
among the control plane's others, so signal handling is left to the process and a bind
failure becomes an ``OSError`` the caller can report.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Generator
from contextlib import suppress
from typing import Any

import uvicorn

from gossamer.settings import split_addr


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class ApiServer:
    def __init__(self, app: Any, addr: str) -> None:
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
        self._addr = addr
        self._server = _EmbeddedServer(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # Bind here, so a taken port is an OSError for the caller rather than uvicorn's
        # sys.exit inside a task.
        host, port = split_addr(self._addr)
        try:
            sock = socket.create_server((host, port), reuse_port=False)
        except OSError as exc:
            raise OSError(f"the API cannot listen on {self._addr}: {exc.strerror}") from None
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                with suppress(SystemExit):
                    await self._task
                raise OSError(f"the API cannot listen on {self._addr} (is the port in use?)")
            await asyncio.sleep(0.005)

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
