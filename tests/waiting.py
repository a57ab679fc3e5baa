"""Waiting on a condition with a deadline, the one way tests wait for something.

``eventually`` (in a coroutine) and ``eventually_sync`` (in a plain test, for
subprocesses and real networks) call ``check()`` until it returns something truthy and
return that value. An exception raised by ``check`` counts as "not yet"; at the deadline
they fail with an ``AssertionError`` that names what was awaited and the last result or
exception. The interval is only how often to look: the bound is the deadline, so a slow
machine makes a test slower, never wrong. ``ready`` is the sync form for the usual case
of a control plane started as a subprocess: wait until its ``/readyz`` answers 200, and
fail with its log if it exits first.

This module imports no control plane, so that tests of one process can use it cheaply.
"""

from __future__ import annotations

import asyncio
import inspect
import ssl
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

T = TypeVar("T")


async def eventually(check: Callable[[], Awaitable[T] | T], timeout: float = 10.0,
                     what: str = "condition", *, interval: float = 0.02) -> T:
    """``check()``'s first truthy result (``check`` may return an awaitable), polled every
    ``interval`` seconds; fails after ``timeout`` seconds."""
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
        except Exception as exc:  # "not yet"; reported at the deadline
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; "
                                 f"last: {last!r}")
        await asyncio.sleep(interval)


def eventually_sync(check: Callable[[], T | None], timeout: float = 30.0,
                    what: str = "condition", *, interval: float = 0.25) -> T:
    """The blocking form of ``eventually``, for tests without an event loop."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = check()
            if result:
                return result
            last = result
        except Exception as exc:  # "not yet"; reported at the deadline
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; "
                                 f"last: {last!r}")
        time.sleep(interval)


def ready(proc: subprocess.Popen[bytes], url: str, log: Path, timeout: float,
          ca: Path | None = None) -> None:
    """Wait until ``url``/readyz answers 200; fail with ``log`` if ``proc`` exits first or
    the deadline passes. With ``ca``, the API speaks TLS and is verified with that file
    (read on each try: the process writes it when it starts)."""
    def answers() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"exited with {proc.returncode}; its log:\n{log.read_text()}")
        try:
            verify: ssl.SSLContext | bool = (
                True if ca is None else ssl.create_default_context(cafile=ca))
            return httpx.get(f"{url}/readyz", timeout=1.0, verify=verify).status_code == 200
        except (httpx.TransportError, OSError):
            return False  # not listening yet, or its CA not written yet

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if answers():
            return
        time.sleep(0.05)
    pytest.fail(f"not ready after {timeout}s; its log:\n{log.read_text()}")
