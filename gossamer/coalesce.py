"""Coalescing: do a piece of work once per event-loop turn, however often it is asked for.

A control plane reacts to store changes, which arrive in bursts (one sync response, one
transaction, one registration can touch many resources). Work that depends only on the
state as a whole, such as regenerating a proxy's Envoy resources or a mesh's DNS table,
is worth doing once per burst: ``Coalesced`` schedules its callable with
``loop.call_soon`` on the first request and ignores the others until it has run. It
clears its flag before it calls, so a request made while it runs (or after) schedules it
again, and no change is ever left unseen.

Use a ``Coalesced`` directly as a ``MeshState`` listener: it takes and ignores the
changed resource.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Coalesced:
    """``fn``, run soon after the first call since its last run; other calls until then
    do nothing. With ``min_interval`` (seconds), a run starts no sooner than that after
    the previous one started: a long batch handed over in slices (``gossamer.store.
    follow``) then costs a few runs, not one per slice. Calls must come from a running
    event loop."""

    def __init__(self, fn: Callable[[], None], min_interval: float = 0.0) -> None:
        self._fn = fn
        self._min_interval = min_interval
        self._handle: asyncio.Handle | None = None
        self._last: float | None = None

    @property
    def scheduled(self) -> bool:
        """True from a call until ``fn`` runs (or ``cancel``)."""
        return self._handle is not None

    def __call__(self, _change: object = None) -> None:
        if self._handle is not None:
            return
        loop = asyncio.get_running_loop()
        wait = 0.0 if self._last is None else self._last + self._min_interval - loop.time()
        self._handle = (loop.call_later(wait, self._run) if wait > 0
                        else loop.call_soon(self._run))

    def cancel(self) -> None:
        """Drop a scheduled run, if any (a later call schedules one again)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _run(self) -> None:
        self._handle = None  # first: a call made while fn runs schedules another run
        if self._min_interval:
            self._last = asyncio.get_running_loop().time()
        self._fn()
