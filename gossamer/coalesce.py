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
    do nothing. Calls must come from a running event loop."""

    def __init__(self, fn: Callable[[], None]) -> None:
        self._fn = fn
        self._handle: asyncio.Handle | None = None

    @property
    def scheduled(self) -> bool:
        """True from a call until ``fn`` runs (or ``cancel``)."""
        return self._handle is not None

    def __call__(self, _change: object = None) -> None:
        if self._handle is None:
            self._handle = asyncio.get_running_loop().call_soon(self._run)

    def cancel(self) -> None:
        """Drop a scheduled run, if any (a later call schedules one again)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _run(self) -> None:
        self._handle = None  # first: a call made while fn runs schedules another run
        self._fn()
