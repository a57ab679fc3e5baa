"""The driver's side of a simulator worker (``tests.bench.fleet.worker``): start it, send
commands, await its events.

Events arrive as JSON lines; each is handed to whoever awaits it, keyed by its kind and
its id (a watch) or name (an extra sidecar). An ``error`` event, or the worker exiting,
fails every pending wait with the worker's reason, so a broken worker stops the run with
a message instead of a hang.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.bench.fleet.processes import die_with_parent


class WorkerFailed(RuntimeError):
    pass


class WorkerLink:
    def __init__(self, zone: str, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.zone = zone
        self.proc = proc
        self.log = log
        self._pending: dict[tuple[str, str], asyncio.Future[dict[str, Any]]] = {}
        self._failure: WorkerFailed | None = None
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, zone: str, config: dict[str, Any], root: Path,
                    module: str = "tests.bench.fleet.worker") -> WorkerLink:
        path = root / f"worker-{zone}.json"
        path.write_text(json.dumps(config))
        log = root / f"worker-{zone}.log"
        with open(log, "ab") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", module, str(path),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                preexec_fn=die_with_parent, limit=1 << 24)
        return cls(zone, proc, log)

    def _future(self, kind: str, key: str) -> asyncio.Future[dict[str, Any]]:
        if self._failure is not None:
            raise self._failure
        return self._pending.setdefault(
            (kind, key), asyncio.get_running_loop().create_future())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            event = json.loads(line)
            kind = event["event"]
            if kind == "error":
                self._fail(f"worker {self.zone}: {event['detail']}")
                continue
            key = str(event.get("id") or event.get("name") or "")
            future = self._pending.setdefault(
                (kind, key), asyncio.get_running_loop().create_future())
            if not future.done():
                future.set_result(event)
            else:  # a second event of the same key: keep the latest for the next waiter
                self._pending[(kind, key)] = asyncio.get_running_loop().create_future()
                self._pending[(kind, key)].set_result(event)
        self._fail(f"worker {self.zone} exited ({self.proc.returncode}); see {self.log}")

    def _fail(self, reason: str) -> None:
        self._failure = WorkerFailed(reason)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(self._failure)
                future.add_done_callback(lambda f: f.exception())  # raised to any waiter

    async def wait(self, kind: str, key: str = "", timeout: float | None = None
                   ) -> dict[str, Any]:
        future = self._future(kind, key)
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        finally:
            if future.done():
                self._pending.pop((kind, key), None)

    async def send(self, command: dict[str, Any]) -> None:
        if self._failure is not None:
            raise self._failure
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command).encode() + b"\n")
        await self.proc.stdin.drain()

    async def stop(self) -> None:
        if self.proc.returncode is None and self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 15)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        self._reader.cancel()
