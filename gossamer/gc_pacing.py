"""Keeping the cyclic garbage collector's pauses short while a control plane's state grows.

CPython's collector runs a full (generation 2) collection whenever the objects promoted
since the last one pass a quarter of the long-lived ones: while a batch of 20,000
policies grows a zone CP's state by millions of objects, that is a full scan of the
whole heap at every 25 % of growth, each one step of the event loop (0.6-1.9 s at
20,000 policies on a loaded 2-core machine, the largest stalls of the API measured by
``tests/bench/stall_trace.py``). ``gc.freeze`` after start (``gossamer.process``) keeps
what start built out of those scans, but not what the batch adds.

``pace`` moves the survivors of every generation-1 collection to the permanent
generation (``gc.freeze``: the young generations are empty at that moment, so only
objects that survived two collections go), so a full collection finds next to nothing
to scan. The cost: a reference cycle among such long-lived objects that later becomes
garbage is reclaimed only by the next *full pass*, ``full_pass``, which unfreezes and
collects everything; ``pace`` runs one every ``FULL_EVERY`` seconds, a pause of its own
(a few hundred milliseconds at 20,000 policies) at a known rate rather than during every
batch. Acyclic garbage (most of it: replaced resources) is freed by reference counting,
frozen or not.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from typing import Any

log = logging.getLogger(__name__)

FULL_EVERY = 3600.0  # seconds between two full passes


def _promote(phase: str, info: dict[str, Any]) -> None:
    if phase == "stop" and info.get("generation") == 1:
        gc.freeze()


def full_pass() -> int:
    """Collect everything, frozen objects too, then freeze the survivors again; the
    number of unreachable objects found."""
    started = time.perf_counter()
    gc.unfreeze()
    found = gc.collect()
    gc.freeze()
    log.debug("full garbage collection: %d unreachable, %.0f ms", found,
              (time.perf_counter() - started) * 1000)
    return found


async def pace(full_every: float = FULL_EVERY) -> None:
    """Promote generation-1 survivors to the permanent generation until cancelled, with a
    ``full_pass`` every ``full_every`` seconds."""
    gc.callbacks.append(_promote)
    try:
        while True:
            await asyncio.sleep(full_every)
            full_pass()
    finally:
        gc.callbacks.remove(_promote)
