"""The in-memory store: the reference implementation of the store contract, for tests."""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from gossamer.errors import AlreadyExists, Conflict, NotFound, RevisionCompacted
from gossamer.model.base import Meta, Resource
from gossamer.store.base import (
    EVENT_RETENTION,
    Event,
    EventType,
    ListQuery,
    Page,
    labels_match,
    page_token,
)


class MemoryStore:
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

    async def create(self, res: Resource) -> Resource:
        if res.key in self._items:
            raise AlreadyExists(_describe(res.type, res.name, res.mesh) + " already exists")
        now = datetime.now(UTC)
        stored = res.with_meta(Meta(version=1, creation_time=now, modification_time=now,
                                    revision=self._revision + 1))
        await self._commit(EventType.CREATED, stored)
        return stored

    async def update(self, res: Resource, expected_version: int) -> Resource:
        current = await self.get(res.type, res.name, res.mesh)
        if current.meta.version != expected_version:
            raise Conflict(_stale(res.type, res.name, res.mesh, expected_version,
                                  current.meta.version))
        stored = res.with_meta(Meta(version=expected_version + 1,
                                    creation_time=current.meta.creation_time,
                                    modification_time=datetime.now(UTC),
                                    revision=self._revision + 1))
        await self._commit(EventType.UPDATED, stored)
        return stored

    async def delete(self, kind: str, name: str, mesh: str = "",
                     expected_version: int | None = None) -> None:
        current = await self.get(kind, name, mesh)
        if expected_version is not None and current.meta.version != expected_version:
            raise Conflict(_stale(kind, name, mesh, expected_version, current.meta.version))
        await self._commit(EventType.DELETED, current)

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
                pending = [e for e in self._events if e.revision > cursor]
            for event in pending:
                cursor = event.revision
                yield event

    async def close(self) -> None:
        return None

    async def _commit(self, kind: EventType, res: Resource) -> None:
        async with self._changed:
            self._revision += 1
            if kind is EventType.DELETED:
                del self._items[res.key]
            else:
                self._items[res.key] = res
            self._events.append(Event(self._revision, kind, res))
            if len(self._events) > self._retention:
                del self._events[: len(self._events) - self._retention]
            self._changed.notify_all()


def _describe(kind: str, name: str, mesh: str) -> str:
    return f"{kind} {name!r}" + (f" in mesh {mesh!r}" if mesh else "")


def _stale(kind: str, name: str, mesh: str, expected: int, actual: int) -> str:
    return (f"{_describe(kind, name, mesh)} is at version {actual}, not {expected}: "
            "it changed since it was read; read it again and retry")
