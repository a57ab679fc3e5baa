"""Where a lease lives, and the store view the singleton work writes through.

A ``Leases`` backend grants a lease in one step on its own clock (``acquire``: renew it
for its holder, or take it when it expired, bumping the epoch), frees it (``release``),
and makes fenced writes (``write``: refused with ``NotLeader`` unless the fence's holder
still holds the lease in the fence's epoch when the write commits). PostgreSQL's is
``gossamer.store.pg_leases.PostgresLeases``, checked inside the write's transaction;
``LocalLeases`` serves the single-node stores (memory, SQLite), where the one process is
always elected.

``FencedStore`` is a ``Store`` whose writes carry the fence of the current term (asked of
the election at each write) and are refused between terms; reads and watches pass
straight through. The singleton work is built once over it, so it needs no knowledge of
the election.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from gossamer.election.core import Fence
from gossamer.errors import Unavailable
from gossamer.model.base import Resource
from gossamer.store.base import Event, ListQuery, Page, SingleWrites, Store, WriteOp


class NotLeader(Unavailable):
    """A write of the singleton work made without a current lease (fenced off)."""

    title = "not the leader"


@dataclass(frozen=True)
class Grant:
    """The lease is ours in ``epoch``."""

    epoch: int


@dataclass(frozen=True)
class Held:
    """``holder`` has the lease and it has not expired."""

    holder: str


class Leases(Protocol):
    async def acquire(self, name: str, holder: str, ttl: float) -> Grant | Held:
        """Renew or take lease ``name`` for ``ttl`` seconds; ``StoreUnavailable`` if the
        store does not answer."""
        ...

    async def release(self, name: str, holder: str, epoch: int) -> None:
        """End our lease now (nothing if it is no longer ours)."""
        ...

    async def write(self, store: Store, ops: Sequence[WriteOp],
                    fence: Fence) -> builtins.list[Resource | None]:
        """``store.write(ops)`` if ``fence`` holds when it commits, else ``NotLeader``."""
        ...

    async def close(self) -> None:
        ...


class LocalLeases:
    """Leases of one process (memory and SQLite stores have one node): whoever asks gets
    the lease unless another holder's is unexpired, on this process's monotonic clock."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._leases: dict[str, tuple[str, int, float]] = {}  # name -> holder, epoch, until

    async def acquire(self, name: str, holder: str, ttl: float) -> Grant | Held:
        now = self._clock()
        current, epoch, until = self._leases.get(name, ("", 0, 0.0))
        if current != holder and until > now:
            return Held(current)
        if current != holder or until <= now:
            epoch += 1
        self._leases[name] = (holder, epoch, now + ttl)
        return Grant(epoch)

    async def release(self, name: str, holder: str, epoch: int) -> None:
        if self._leases.get(name, ("", 0, 0.0))[:2] == (holder, epoch):
            self._leases[name] = (holder, epoch, 0.0)

    async def write(self, store: Store, ops: Sequence[WriteOp],
                    fence: Fence) -> builtins.list[Resource | None]:
        holder, epoch, until = self._leases.get(fence.name, ("", 0, 0.0))
        if (holder, epoch) != (fence.holder, fence.epoch) or until <= self._clock():
            raise NotLeader(f"the {fence.name} lease of epoch {fence.epoch} has ended")
        return await store.write(ops)

    async def close(self) -> None:
        return None


class FencedStore(SingleWrites):
    """``inner`` for the singleton work: each write carries ``fence()``'s fence."""

    def __init__(self, inner: Store, leases: Leases, fence: Callable[[], Fence | None],
                 refused: Callable[[], None] = lambda: None) -> None:
        """``refused`` is called for each write fenced off (counted by the election)."""
        self.inner = inner
        self._leases = leases
        self._fence = fence
        self._refused = refused

    async def get(self, kind: str, name: str, mesh: str = "") -> Resource:
        return await self.inner.get(kind, name, mesh)

    async def list(self, query: ListQuery) -> Page:
        return await self.inner.list(query)

    async def write(self, ops: Sequence[WriteOp]) -> builtins.list[Resource | None]:
        fence = self._fence()
        try:
            if fence is None:
                raise NotLeader("this replica is not the leader: its singleton work may "
                                "not write")
            return await self._leases.write(self.inner, ops, fence)
        except NotLeader:
            self._refused()
            raise

    async def revision(self) -> int:
        return await self.inner.revision()

    def watch(self, since: int) -> AsyncIterator[Event]:
        return self.inner.watch(since)

    async def close(self) -> None:
        """A view: the store is the process's to close."""


def leases_for(store: Store) -> Leases:
    """The lease backend of ``store``: its own if it has one (Postgres), else local."""
    own: Callable[[], Leases] | None = getattr(store, "leases", None)
    return own() if own is not None else LocalLeases()
