"""Running a component as a process: start it, wait for a signal or for it to end, stop it.

Every long-running command (``gossamer global run``, ``zone run``, ``proxy run``,
``ingress run``) runs its component with ``run_until_signal``; the component only has to
start, wait and stop. SIGINT and SIGTERM are handled from before ``start`` until the end:

- a signal while the component starts cancels ``start`` (which stops whatever it had
  started) and the run returns;
- a signal while it runs stops it with ``stop()`` (for the sidecar agent, a drain of
  Envoy) and the run returns;
- when ``wait()`` returns or raises by itself (a part failed, the API server ended), the
  component is stopped with ``abort`` (by default ``stop``) and whatever ``wait`` raised
  is raised again, so the process exits with the failure;
- a failing ``start`` raises.

Once started, everything the start built is frozen out of the cyclic garbage
collector's scans (``gc.freeze``): it lives as long as the process anyway; and so is,
from then on, whatever survives two collections (``gossamer.gc_pacing``).

SIGHUP calls ``reload`` when the caller gives one (the sidecar agent and the ingress read
their token file again) and changes nothing else; without one it keeps its default.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from gossamer import gc_pacing

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Runnable(Protocol):
    async def start(self) -> None: ...

    async def wait(self) -> None: ...

    async def stop(self) -> None: ...


async def run_until_signal(component: Runnable, *,
                           abort: Callable[[], Awaitable[None]] | None = None,
                           reload: Callable[[], None] | None = None,
                           pace_gc: bool = False) -> None:
    """Run ``component`` until SIGINT/SIGTERM or until it ends (see the module's doc);
    SIGHUP calls ``reload`` when one is given (an agent reads its token file again).
    ``pace_gc``: a control plane, whose state grows by millions of objects in a batch,
    has ``gc_pacing`` keep its full collections short; an agent, whose heap is small and
    whose memory counts on every host, keeps the interpreter's own collector."""
    loop = asyncio.get_running_loop()
    signalled = asyncio.Event()
    for sig in SIGNALS:
        loop.add_signal_handler(sig, signalled.set)
    if reload is not None:
        loop.add_signal_handler(signal.SIGHUP, reload)
    stopper = asyncio.ensure_future(signalled.wait())
    pacing: asyncio.Future[None] | None = None
    try:
        started = await _unless_signalled(component.start(), stopper)
        if started is None:
            log.info("signal received while starting: stopped")
            return
        started.result()
        # What start built (modules, parts, listed state) lives as long as the process:
        # move it out of the cyclic collector's reach, so a full collection scans only
        # what came after (a zone CP's full collections paused its loop for 0.2-0.4 s).
        gc.freeze()
        if pace_gc:  # and what comes after
            pacing = asyncio.ensure_future(gc_pacing.pace())
        running = await _unless_signalled(component.wait(), stopper)
        if running is None:
            log.info("signal received: stopping")
            await component.stop()
            return
        await (abort or component.stop)()
        running.result()
    finally:
        stopper.cancel()
        if pacing is not None:
            pacing.cancel()
        for sig in (*SIGNALS, signal.SIGHUP):
            loop.remove_signal_handler(sig)


async def _unless_signalled(coro: Coroutine[Any, Any, None],
                            stopper: asyncio.Future[Any]) -> asyncio.Future[None] | None:
    """``coro``'s finished task, or None if ``stopper`` finished first (``coro`` is then
    cancelled and waited for). If both are done, ``coro`` wins."""
    task = asyncio.ensure_future(coro)
    await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        return task
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return None
