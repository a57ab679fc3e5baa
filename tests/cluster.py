"""In-process control planes for integration tests and benchmarks: a global and zones
wired over real gRPC with TLS on loopback, each with its own store and data directory."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from global_cp.app import GlobalControlPlane
from gossamer.settings import GlobalSettings, ZoneSettings
from zone_cp.app import ZoneControlPlane

T = TypeVar("T")


async def eventually(check: Callable[[], Awaitable[T] | T], timeout: float = 10.0,
                     interval: float = 0.02, what: str = "condition") -> T:
    """Wait until ``check()`` (sync or async) returns a truthy value and return it, or fail
    at the deadline. Exceptions from ``check`` count as "not yet"; the last is reported.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return result
            last = result
        except AssertionError as exc:
            last = exc
        except Exception as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
        await asyncio.sleep(interval)


async def start_global(data_dir: Path, store: str = "sqlite", heartbeat: float = 1.0,
                       timeout: float = 3.0) -> GlobalControlPlane:
    cp = GlobalControlPlane(GlobalSettings(
        data_dir=data_dir, api_addr="127.0.0.1:0", sync_addr="127.0.0.1:0", store=store,
        heartbeat_interval=heartbeat, heartbeat_timeout=timeout))
    await cp.start()
    return cp


async def zone_token(cp: GlobalControlPlane, zone: str, path: Path,
                     valid_for: float = 3600.0) -> tuple[Path, str]:
    token, claims = await cp.zone_tokens.issue(zone, valid_for, ["cp", "ingress"])
    path.write_text(token)
    return path, claims.token_id


async def start_zone(global_cp: GlobalControlPlane, zone: str, data_dir: Path,
                     store: str = "sqlite", heartbeat: float = 1.0, timeout: float = 3.0,
                     token_file: Path | None = None, sync_port: int | None = None,
                     ca: Path | None = None) -> ZoneControlPlane:
    if token_file is None:
        token_file, _ = await zone_token(global_cp, zone, data_dir.parent / f"{zone}.token")
    port = sync_port or (global_cp.sync.port if global_cp.sync else 0)
    cp = ZoneControlPlane(ZoneSettings(
        zone=zone, data_dir=data_dir, api_addr="127.0.0.1:0", store=store,
        global_url=f"grpcs://127.0.0.1:{port}", token_file=token_file,
        global_ca=ca or global_cp.tls.ca_file, heartbeat_interval=heartbeat,
        heartbeat_timeout=timeout))
    await cp.start()
    return cp
