"""The in-memory store: the reference implementation of the store contract, for tests."""

from __future__ import annotations

import asyncio
import bisect
import builtins
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from operator import attrgetter

from gossamer.errors import AlreadyExists, Conflict, NotFound, RevisionCompacted
from gossamer.model.base import Meta, Resource
from gossamer.store.base import (
    EVENT_RETENTION,
    Create,
    Delete,
    Event,
    EventType,
    ListQuery,
    Page,
    Put,
    SingleWrites,
    Update,
    WriteOp,
    labels_match,
    op_key,
    page_token,
    same_content,
)

_REVISION = attrgetter("revision")


class MemoryStore(SingleWrites):
    def __init__(self, retention: int = EVENT_RETENTION) -> None:
        self._items: dict[tuple[str, str, str], Resource] = {}
        self._events: builtins.list[Event] = []
        self._revision = 0
        self._retention = retention
        self._changed = asyncio.Condition()

    async def get(self, kind: str, name: str, mesh: str = "") -> Resource:
        try:
            return self._items[(kind, mesh, name)]
        except KeyError:
            raise NotFound(_describe(kind, name, mesh) + " not found") from None

    async def list(self, query: ListQuery) -> Page:
        size = query.page_size()
        after = query.after()
        matching = sorted(
            (r for r in self._items.values()
             if r.type == query.kind
             and (query.mesh is None or r.mesh == query.mesh)
             and labels_match(r.labels, query.labels)),
            key=lambda r: (r.mesh, r.name),
        )
        rest = [r for r in matching if after is None or (r.mesh, r.name) > after]
        items = rest[:size]
        token = page_token(items[-1]) if len(rest) > size else None
        return Page(items=items, total=len(matching), next_token=token)

    async def write(self, ops: Sequence[WriteOp]) -> builtins.list[Resource | None]:
        # Planned against a staged view, then committed at once: a refused op raises
        # before anything is stored. No await between the two, so nobody interleaves.
        staged: dict[tuple[str, str, str], Resource | None] = {}
        changes: builtins.list[tuple[EventType, Resource]] = []
        results: builtins.list[Resource | None] = []
        now = datetime.now(UTC)
        for op in ops:
            key = op_key(op)
            current = staged[key] if key in staged else self._items.get(key)
            change = _plan(op, current, now, self._revision + len(changes) + 1)
            if change is None:
                results.append(current)
                continue
            kind, res = change
            staged[key] = None if kind is EventType.DELETED else res
            changes.append(change)
            results.append(res)
        await self._commit(changes)
        return results

    async def revision(self) -> int:
        return self._revision

    async def watch(self, since: int) -> AsyncIterator[Event]:
        cursor = since
        while True:
            async with self._changed:
                await self._changed.wait_for(lambda c=cursor: self._revision > c)  # type: ignore[misc]
                if self._events and self._events[0].revision > cursor + 1:
                    raise RevisionCompacted(f"events before revision "
                                            f"{self._events[0].revision} are compacted")
                # Events are in revision order: find the first new one, not scan them all
                # (a watch step per write was O(events) at thousands of Dataplanes).
                start = bisect.bisect_right(self._events, cursor, key=_REVISION)
                pending = self._events[start:]
            for event in pending:
                cursor = event.revision
                yield event

    async def close(self) -> None:
        return None

    async def _commit(self, changes: builtins.list[tuple[EventType, Resource]]) -> None:
        if not changes:
            return
        async with self._changed:
            for kind, res in changes:
                self._revision += 1
                if kind is EventType.DELETED:
                    del self._items[res.key]
                else:
                    self._items[res.key] = res
                self._events.append(Event(self._revision, kind, res))
            if len(self._events) > self._retention:
                del self._events[: len(self._events) - self._retention]
            self._changed.notify_all()


def _plan(op: WriteOp, current: Resource | None, now: datetime,
          revision: int) -> tuple[EventType, Resource] | None:
    """What ``op`` does to ``current`` (None: nothing); raises the write's refusal."""
    if isinstance(op, Delete):
        if current is None:
            if op.missing_ok:
                return None
            raise NotFound(_describe(op.kind, op.name, op.mesh) + " not found")
        if op.expected_version is not None and current.meta.version != op.expected_version:
            raise Conflict(_stale(op.kind, op.name, op.mesh, op.expected_version,
                                  current.meta.version))
        return EventType.DELETED, current
    res = op.resource
    if current is None:
        if isinstance(op, Update):
            raise NotFound(_describe(res.type, res.name, res.mesh) + " not found")
        return EventType.CREATED, res.with_meta(Meta(version=1, creation_time=now,
                                                     modification_time=now, revision=revision))
    if isinstance(op, Create):
        raise AlreadyExists(_describe(res.type, res.name, res.mesh) + " already exists")
    if isinstance(op, Update) and current.meta.version != op.expected_version:
        raise Conflict(_stale(res.type, res.name, res.mesh, op.expected_version,
                              current.meta.version))
    if isinstance(op, Put) and same_content(current, res):
        return None
    return EventType.UPDATED, res.with_meta(Meta(
        version=current.meta.version + 1, creation_time=current.meta.creation_time,
        modification_time=now, revision=revision))


def _describe(kind: str, name: str, mesh: str) -> str:
    return f"{kind} {name!r}" + (f" in mesh {mesh!r}" if mesh else "")


def _stale(kind: str, name: str, mesh: str, expected: int, actual: int) -> str:
    return (f"{_describe(kind, name, mesh)} is at version {actual}, not {expected}: "
            "it changed since it was read; read it again and retry")
