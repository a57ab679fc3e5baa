"""A store's resources in memory, fed by its watch: what the API's single reads come from.

Theory of operation. ``run`` lists every kind the view keeps at the store's revision
``r``, then follows the watch from ``r``: once it has taken the event at revision ``n``,
``revision`` is ``n`` and the view holds exactly what the store held at ``n`` (for the
kinds it keeps). It is the one follower of the store in its process: the parts that keep
tables of their own (``MeshState`` at a zone, the sync's ``StoreFeed`` at the global)
``follow`` the view instead of the store and get the very ``Resource`` objects it
holds, so each resource is decoded and kept once, whoever reads it. Each follower has a
queue of its own, drained by its own task with turns of the loop: the view is never held
back by a slow follower, and reaches a batch's last revision as soon as the watch has
read it.

Reads see the caller's writes: a read waits (boundedly, ``CATCH_UP``) until the view has
reached the revision of every write it must see. Which revision depends on who writes:

- ``shared`` (PostgreSQL, whose replicas all write): the store's revision when the read
  began, one round trip (``store.revision()``). Every write that had returned before,
  through any replica, is at or below it. When the store does not answer
  (``StoreUnavailable``, or no revision within ``PROBE_TIMEOUT``) the view answers as it
  is, with a ``Stale`` note: why, and since when.
- the process is the store's one writer (SQLite, memory): the revision after this
  process's last write of that resource, which the writer reports (``wrote``; the store
  knows its revision without a read). A read of anything else is answered at once: a
  batch of thousands being followed does not delay a read it did not touch.

A view that does not catch up in time, or has not loaded yet, sends the read to the store.
"""

from __future__ import annotations

import asyncio
import builtins
import heapq
import logging
from bisect import bisect_left, bisect_right, insort
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from gossamer.errors import NotFound, RevisionCompacted, StoreUnavailable
from gossamer.model.base import Resource
from gossamer.model.registry import REGISTRY
from gossamer.store.base import EventType, ListQuery, Page, Store, labels_match, page_token
from gossamer.store.follow import follow as follow_store
from gossamer.store.turns import Turns

log = logging.getLogger(__name__)

Key = tuple[str, str, str]
# Kinds the view leaves in the store: revocations may number 100,000 and more, and
# "revoked?" is a single store read by design.
NOT_KEPT = frozenset({"TokenRevocation"})
CATCH_UP = 1.0  # longest wait for the view to reach a read's revision, in seconds
PROBE_TIMEOUT = 0.5  # a store that gives no revision within this is not answering
RETRY_MIN, RETRY_MAX = 0.05, 2.0  # between listings that failed, in seconds


@dataclass(frozen=True)
class Stale:
    """Why a read came from the view without the store's word, and since when."""

    reason: str
    since: datetime

    def header(self) -> str:
        """The ``Gossamer-Stale`` header: ``<reason>; since <ISO time>``."""
        # One line of ASCII (a header is Latin-1), whatever the driver said.
        reason = " ".join(self.reason.split()).encode("ascii", "replace").decode()
        stamp = self.since.isoformat(timespec="seconds").replace("+00:00", "Z")
        return f"{reason}; since {stamp}"


@dataclass(frozen=True)
class Read:
    """A read's answer: the resource (None: there is none) and, if stale, why."""

    resource: Resource | None
    stale: Stale | None = None


@dataclass(frozen=True)
class ReadPage:
    """A list's answer: the page and, if stale, why."""

    page: Page
    stale: Stale | None = None


class _Follower:
    """One follower's queue: ``None`` for a reset (read the view whole), else a change."""

    def __init__(self, kinds: Iterable[str]) -> None:
        self.kinds = frozenset(kinds)
        self.queue: asyncio.Queue[tuple[Resource, bool] | None] = asyncio.Queue()


class StoreView:
    def __init__(
        self,
        store: Store,
        kinds: Iterable[str] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        catch_up: float = CATCH_UP,
        shared: bool = True,
    ) -> None:
        self.store = store
        self._catch_up = catch_up
        self.shared = shared
        # One writer: the revision each resource this process wrote must be read at, until
        # the view reaches it (in the order written, to forget them in that order).
        self._pending: dict[Key, int] = {}
        self._written: deque[tuple[int, Sequence[Key]]] = deque()
        self.kinds = frozenset(
            kinds if kinds is not None else (d.name for d in REGISTRY if d.name not in NOT_KEPT)
        )
        self._clock = clock
        # The resources by kind, and each kind's (mesh, name) in order: sorted on the
        # kind's first list (20,000 keys: about 15 ms), then kept in order by each change
        # (a bisection and a move of pointers, a few microseconds).
        self._by_kind: dict[str, dict[Key, Resource]] = {}
        self._sorted: dict[str, builtins.list[tuple[str, str]]] = {}
        self._kind_written: dict[str, int] = {}  # one writer: its last write of each kind
        self.revision = 0
        self.loaded = asyncio.Event()
        self._waiters: builtins.list[tuple[int, int, asyncio.Future[None]]] = []
        self._ticket = 0  # tie-breaker for the heap: futures do not compare
        self._followers: builtins.list[_Follower] = []
        self._stale: Stale | None = None

    # -- following the store ----------------------------------------------------------

    async def run(self) -> None:
        backoff = RETRY_MIN
        while True:
            try:
                revision, items = await self._listing()
            except StoreUnavailable as exc:  # at start, or relisting during an outage
                log.warning("store view: %s; listing again in %.2fs", exc.detail, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, RETRY_MAX)
                continue
            backoff = RETRY_MIN
            self._reset(items, revision)
            try:
                turns = Turns()
                async for event in self.store.watch(revision):
                    self._apply(event.revision, event.resource, event.type is EventType.DELETED)
                    await turns.tick()
            except RevisionCompacted:
                log.warning("store view fell behind the store's retention; relisting")

    async def _listing(self) -> tuple[int, dict[Key, Resource]]:
        revision = await self.store.revision()
        items: dict[Key, Resource] = {}
        for kind in sorted(self.kinds):
            items.update((r.key, r) for r in (await self.store.list(ListQuery(kind))).items)
        return revision, items

    def _reset(self, items: dict[Key, Resource], revision: int) -> None:
        self._by_kind = {}
        for key, res in items.items():
            self._by_kind.setdefault(key[0], {})[key] = res
        self._sorted.clear()
        self.revision = revision
        for follower in self._followers:
            follower.queue.put_nowait(None)
        self.loaded.set()
        self._wake()

    def _apply(self, revision: int, res: Resource, deleted: bool) -> None:
        if res.type in self.kinds:
            table = self._by_kind.setdefault(res.type, {})
            key, order = res.key, self._sorted.get(res.type)
            if deleted:
                if table.pop(key, None) is not None and order is not None:
                    del order[bisect_left(order, (res.mesh, res.name))]
            else:
                if key not in table and order is not None:
                    insort(order, (res.mesh, res.name))
                table[key] = res
            for follower in self._followers:
                if res.type in follower.kinds:
                    follower.queue.put_nowait((res, deleted))
        self.revision = revision
        self._wake()

    def _wake(self) -> None:
        while self._written and self._written[0][0] <= self.revision:
            revision, keys = self._written.popleft()
            for key in keys:
                if self._pending.get(key, revision + 1) <= revision:
                    del self._pending[key]
        while self._waiters and self._waiters[0][0] <= self.revision:
            _, _, waiter = heapq.heappop(self._waiters)
            if not waiter.done():
                waiter.set_result(None)

    async def follow(
        self,
        kinds: Iterable[str],
        reset: Callable[[list[Resource]], None],
        changed: Callable[[Resource, bool], None],
    ) -> None:
        """``gossamer.store.follow.follow`` over the view: ``reset`` with every resource
        of ``kinds`` now and after the view relisted, then ``changed`` for each write
        after it, in order. Runs until cancelled."""
        wanted = frozenset(kinds)
        missing = wanted - self.kinds
        if missing:
            raise ValueError(f"the view does not keep {', '.join(sorted(missing))}")
        await self.loaded.wait()
        follower = _Follower(wanted)
        self._followers.append(follower)
        follower.queue.put_nowait(None)
        try:
            turns = Turns()
            while True:
                item = await follower.queue.get()
                if item is None:
                    # The view as it is now holds every change queued since the mark.
                    _drain(follower.queue)
                    reset(self.resources(wanted))
                else:
                    changed(*item)
                await turns.tick()
        finally:
            self._followers.remove(follower)

    # -- reading -----------------------------------------------------------------------

    def held(self, kind: str, name: str, mesh: str = "") -> Resource | None:
        """What the view holds now, fresh or not."""
        return self._by_kind.get(kind, {}).get((kind, mesh, name))

    def resources(self, kinds: Iterable[str]) -> builtins.list[Resource]:
        """Every resource of ``kinds`` the view holds now."""
        out: builtins.list[Resource] = []
        for kind in kinds:
            out += self._by_kind.get(kind, {}).values()
        return out

    def __len__(self) -> int:
        return sum(len(table) for table in self._by_kind.values())

    def page(self, query: ListQuery) -> Page:
        """``Store.list`` over what the view holds now: ordered by (mesh, name), the
        same totals and page tokens."""
        size = query.page_size()
        after = query.after()
        keys = self._sorted.get(query.kind)
        if keys is None:
            keys = self._sorted[query.kind] = sorted(
                (m, n) for _, m, n in self._by_kind.get(query.kind, {})
            )
        lo, hi = 0, len(keys)
        if query.mesh is not None:  # a mesh's keys are contiguous; names hold no NUL
            lo, hi = bisect_left(keys, (query.mesh, "")), bisect_left(keys, (query.mesh + "\0",))
        start = max(lo, bisect_right(keys, after)) if after is not None else lo
        table = self._by_kind.get(query.kind, {})
        items: builtins.list[Resource] = []
        if not query.labels:
            total = hi - lo
            items = [table[(query.kind, m, n)] for m, n in keys[start : min(hi, start + size + 1)]]
        else:
            total = 0
            for i in range(lo, hi):
                res = table[(query.kind, *keys[i])]
                if labels_match(res.labels, query.labels):
                    total += 1
                    if i >= start and len(items) <= size:
                        items.append(res)
        more = len(items) > size
        items = items[:size]
        return Page(items=items, total=total, next_token=page_token(items[-1]) if more else None)

    async def wrote(self, keys: Sequence[Key]) -> None:
        """A write of ``keys`` (``Resource.key``) through this process returned: reads of
        them wait for the view to reach it. Only a sole writer keeps this (a shared store
        is asked its revision by each read)."""
        if self.shared or not keys:
            return
        revision = await self.store.revision()  # at or after the write's own
        if revision <= self.revision:
            return
        for key in keys:
            self._pending[key] = revision
            self._kind_written[key[0]] = revision
        self._written.append((revision, keys))

    async def read(self, kind: str, name: str, mesh: str = "") -> Read:
        """The resource, seeing every write it must (the module's docstring); from the
        store itself when the view does not keep the kind or cannot catch up in time;
        from the view, marked stale, when the store does not answer. ``StoreUnavailable``
        only when the store does not answer and the view has nothing (not loaded, or a
        kind it does not keep)."""
        if kind not in self.kinds:
            return Read(await _get(self.store, kind, name, mesh))
        answer, stale = await self._settle(self._pending.get((kind, mesh, name), 0))
        if answer:
            return Read(self.held(kind, name, mesh), stale)
        return Read(await _get(self.store, kind, name, mesh))

    async def list(self, query: ListQuery) -> ReadPage:
        """``Store.list`` as ``read`` answers a single read (a sole writer waits for its
        last write of the kind)."""
        if query.kind not in self.kinds:
            return ReadPage(await self.store.list(query))
        query.page_size(), query.after()  # a bad size or token is refused before any wait
        answer, stale = await self._settle(self._kind_written.get(query.kind, 0))
        if answer:
            return ReadPage(self.page(query), stale)
        return ReadPage(await self.store.list(query))

    async def _settle(self, written: int) -> tuple[bool, Stale | None]:
        """Whether the view may answer now, and how stale it is: caught up with the
        store (``shared``) or with this process's ``written`` revision, or the store does
        not answer (stale; ``StoreUnavailable`` if the view never loaded)."""
        if not self.shared:
            return await self.caught_up(written, self._catch_up), None
        try:
            async with asyncio.timeout(PROBE_TIMEOUT):
                target = await self.store.revision()
        except (StoreUnavailable, TimeoutError) as exc:
            reason = (
                exc.detail
                if isinstance(exc, StoreUnavailable)
                else f"the store gave no revision within {PROBE_TIMEOUT:g}s"
            )
            stale = self._went_stale(reason)
            if not self.loaded.is_set():
                raise StoreUnavailable(f"{reason}; and nothing is cached yet") from exc
            return True, stale
        self._stale = None
        return await self.caught_up(target, self._catch_up), None

    async def caught_up(self, revision: int, timeout: float) -> bool:
        """Wait until the view has reached ``revision``; False after ``timeout`` s."""
        if self.loaded.is_set() and self.revision >= revision:
            return True
        waiter = asyncio.get_running_loop().create_future()
        self._ticket += 1
        heapq.heappush(self._waiters, (revision, self._ticket, waiter))
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except TimeoutError:
            return False
        return True

    def _went_stale(self, reason: str) -> Stale:
        """The outage's note: its first reason and time, kept until the store answers."""
        if self._stale is None:
            self._stale = Stale(reason, self._clock())
            log.warning("store does not answer (%s): reads come from the view", reason)
        return self._stale


async def follow(
    source: Store | StoreView,
    kinds: Iterable[str],
    reset: Callable[[list[Resource]], None],
    changed: Callable[[Resource, bool], None],
) -> None:
    """Follow a view when the process has one, else the store itself."""
    if isinstance(source, StoreView):
        await source.follow(kinds, reset, changed)
    else:
        await follow_store(source, kinds, reset, changed)


async def _get(store: Store, kind: str, name: str, mesh: str) -> Resource | None:
    try:
        return await store.get(kind, name, mesh)
    except NotFound:
        return None


def _drain(queue: asyncio.Queue[tuple[Resource, bool] | None]) -> None:
    while not queue.empty():
        queue.get_nowait()
