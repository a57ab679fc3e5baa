"""The store protocol every backend implements, and the types it speaks.

Writes are checked: ``create`` refuses an existing key, ``update`` and ``delete`` refuse a
stale ``expected_version`` (``Conflict``), so two writers never overwrite each other. Every
write bumps a store-wide ``revision`` and appends an event; ``watch(since)`` replays the
events after ``since`` and then follows new ones, so a watcher that restarts resumes where
it left off. Events older than the retention window are compacted away, and resuming
before them raises ``RevisionCompacted``: the watcher lists everything and continues from
``revision()``.
"""

from __future__ import annotations

import base64
import enum
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from gossamer.errors import InvalidResource
from gossamer.model.base import Resource

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
EVENT_RETENTION = 100_000


class EventType(enum.StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"


@dataclass(frozen=True)
class Event:
    revision: int
    type: EventType
    resource: Resource  # for DELETED: the resource as it was last stored


@dataclass(frozen=True)
class Page:
    items: list[Resource]
    total: int
    next_token: str | None = None


@dataclass(frozen=True)
class ListQuery:
    """What to list: one kind, optionally one mesh, labels that must all match, a page."""

    kind: str
    mesh: str | None = None
    labels: Mapping[str, str] | None = None
    limit: int | None = None
    page_token: str | None = None

    def page_size(self) -> int:
        if self.limit is None:
            return MAX_PAGE_SIZE * 1000  # "everything": internal callers that want all
        if not 1 <= self.limit <= MAX_PAGE_SIZE:
            raise InvalidResource(f"page size must be between 1 and {MAX_PAGE_SIZE}")
        return self.limit

    def after(self) -> tuple[str, str] | None:
        """The (mesh, name) the page token says the previous page ended at."""
        if not self.page_token:
            return None
        try:
            mesh, name = json.loads(base64.urlsafe_b64decode(self.page_token.encode()))
            return str(mesh), str(name)
        except (ValueError, TypeError):
            raise InvalidResource("invalid page token") from None


def page_token(res: Resource) -> str:
    return base64.urlsafe_b64encode(json.dumps([res.mesh, res.name]).encode()).decode()


def labels_match(labels: Mapping[str, str], selector: Mapping[str, str] | None) -> bool:
    return not selector or all(labels.get(k) == v for k, v in selector.items())


class Store(Protocol):
    """A resource store. ``mesh`` is ``""`` for global-scoped kinds."""

    async def get(self, kind: str, name: str, mesh: str = "") -> Resource:
        """The resource, or ``NotFound``."""
        ...

    async def list(self, query: ListQuery) -> Page:
        """Resources ordered by (mesh, name), a page at a time."""
        ...

    async def create(self, res: Resource) -> Resource:
        """Store a new resource at version 1, or ``AlreadyExists``."""
        ...

    async def update(self, res: Resource, expected_version: int) -> Resource:
        """Replace spec and labels if the stored version is ``expected_version``."""
        ...

    async def delete(self, kind: str, name: str, mesh: str = "",
                     expected_version: int | None = None) -> None:
        """Remove the resource, or ``NotFound``; a stale version is a ``Conflict``."""
        ...

    async def revision(self) -> int:
        """The revision of the latest write (0 for an empty store)."""
        ...

    def watch(self, since: int) -> AsyncIterator[Event]:
        """Events with revision > ``since``, then new ones as they happen, forever."""
        ...

    async def close(self) -> None:
        ...
