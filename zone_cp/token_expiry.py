"""Live sessions end with their token (DESIGN §5): the asyncio shell of ``token_deadlines``.

Every stream a token admitted on the zone CP's gRPC port (an agent's ``Session``, a
sidecar's or an ingress's Envoy ADS stream) takes a ``Hold`` on that token for as long as
it runs. ``TokenLifetimes.run`` ends holds two ways:

* a timer that wakes at the earliest expiry held (``Deadlines.next_at``), re-armed
  whenever a hold is taken: the token's ``exp`` ends its streams to the second;
* a watch on the store for ``TokenRevocation`` resources (one per revoked token, synced
  from the global, or written by a standalone zone's own API): the stored revocation's
  event ends the streams holding that token id, with no polling.

An ended hold's ``withdrawn`` says why, and its ``on_end`` callbacks run (synchronously,
in the event loop): the stream wakes and closes itself with UNAUTHENTICATED, and the
agent Session's own ending unregisters its Dataplane or ZoneIngress (``AgentRegistry.
unregister``), so the resource is removed as it is when an agent disconnects.

A revocation stored between a registration's token check and its hold would be missed
by the watch, so revocations seen in the last ``RECENT`` seconds are remembered and a new
hold on one ends at once. If the watch falls behind the store's retention or the store
fails, the revocations of every token held are looked up again before watching resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable

from gossamer.errors import GossamerError, NotFound, RevisionCompacted
from gossamer.model.base import Resource
from gossamer.model.tokenrevocation import TokenRevocationSpec, revocation_name
from gossamer.store.base import EventType, Store
from gossamer.tokens import Claims, Clock
from zone_cp.token_deadlines import Deadlines, Withdrawn

log = logging.getLogger(__name__)

KIND = "TokenRevocation"  # gossamer.model.tokenrevocation
# How long a revocation seen on the watch is remembered for holds taken just after it.
RECENT = 60.0
# Backoff after the store failed under the watch.
RETRY_MAX = 5.0


class Hold:
    """One stream's hold on its token. ``release`` it when the stream ends; ``on_end``
    callbacks run once, if the token ends first (at once if it has already)."""

    __slots__ = ("_callbacks", "_release", "claims", "withdrawn")

    def __init__(self, claims: Claims, release: Callable[[], None]) -> None:
        self.claims = claims
        self.withdrawn: Withdrawn | None = None
        self._release = release
        self._callbacks: list[Callable[[Withdrawn], object]] = []

    def on_end(self, callback: Callable[[Withdrawn], object]) -> None:
        if self.withdrawn is not None:
            callback(self.withdrawn)
        else:
            self._callbacks.append(callback)

    def release(self) -> None:
        self._release()
        self._callbacks.clear()

    def end(self, why: Withdrawn) -> None:
        if self.withdrawn is not None:
            return
        self.withdrawn = why
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(why)


class TokenLifetimes:
    """The zone CP's holds on tokens in use, ended at expiry or revocation."""

    def __init__(self, store: Store, clock: Clock = time.time) -> None:
        self._store = store
        self._clock = clock
        self._deadlines: Deadlines[int] = Deadlines()
        self._holds: dict[int, Hold] = {}
        self._ids = itertools.count(1)
        self._wake = asyncio.Event()
        self._recent: dict[str, float] = {}  # revoked token id -> when seen (monotonic)
        # Set once the watch has its starting revision: revocations stored from then on
        # are seen (nothing is held before the CP serves, so startup misses nothing).
        self.watching = asyncio.Event()

    def __len__(self) -> int:
        return len(self._holds)

    def hold(self, claims: Claims) -> Hold:
        """Hold ``claims``' token for a stream it admitted."""
        key = next(self._ids)
        hold = Hold(claims, lambda: self._forget(key))
        self._holds[key] = hold
        self._deadlines.add(key, claims.token_id, float(claims.expires_at))
        self._wake.set()
        self._forget_old_revocations()
        if claims.token_id in self._recent:
            self._end(self._deadlines.revoked(claims.token_id))
        return hold

    def _forget(self, key: int) -> None:
        self._holds.pop(key, None)
        self._deadlines.remove(key)

    def _end(self, ended: list[tuple[int, Withdrawn]]) -> None:
        for key, why in ended:
            hold = self._holds.pop(key, None)
            if hold is not None:
                log.warning("ending a %s stream: %s", hold.claims.kind, why.detail)
                hold.end(why)

    def revoked(self, token_id: str) -> None:
        """End the holds on ``token_id`` (the watch calls this for each revocation)."""
        self._recent[token_id] = time.monotonic()
        self._end(self._deadlines.revoked(token_id))

    def _forget_old_revocations(self) -> None:
        horizon = time.monotonic() - RECENT
        while self._recent:
            token_id, seen = next(iter(self._recent.items()))
            if seen > horizon:
                return
            del self._recent[token_id]

    # -- the shell ----------------------------------------------------------------------

    async def run(self) -> None:
        """Run the expiry timer and the revocation watch until cancelled."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._expire(), name="token-expiry")
            group.create_task(self._watch(), name="token-revocations")

    async def _expire(self) -> None:
        while True:
            self._wake.clear()
            self._end(self._deadlines.due(self._clock()))
            at = self._deadlines.next_at()
            timeout = None if at is None else max(at - self._clock(), 0.0)
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
            # that arrives as the event is set, and this task would never stop.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    async def _watch(self) -> None:
        delay = 0.05
        revision = await self._revision()
        self.watching.set()
        while True:
            try:
                async for event in self._store.watch(revision):
                    revision = event.revision
                    if event.resource.type == KIND and event.type is not EventType.DELETED:
                        self._on_revocation(event.resource)
                    delay = 0.05
            except (RevisionCompacted, GossamerError) as exc:
                # What was missed may be a revocation: look again for every token held.
                log.warning("revocation watch interrupted (%s); checking held tokens", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
                with contextlib.suppress(GossamerError):
                    revision = await self._store.revision()
                    await self._recheck()

    async def _revision(self) -> int:
        delay = 0.05
        while True:
            try:
                return await self._store.revision()
            except GossamerError as exc:
                log.warning("cannot read the store's revision: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)

    def _on_revocation(self, res: Resource) -> None:
        if isinstance(res.spec, TokenRevocationSpec):
            self.revoked(res.spec.token_id)

    async def _recheck(self) -> None:
        """End the holds on any token a stored revocation names: one get per token held
        (a revocation's name derives from its token), never a listing of them all."""
        held = {(h.claims.kind, h.claims.mesh, h.claims.token_id) for h in self._holds.values()}
        for purpose, mesh, token_id in sorted(held):
            try:
                await self._store.get(KIND, revocation_name(purpose, mesh, token_id))
            except NotFound:
                continue
            self.revoked(token_id)
