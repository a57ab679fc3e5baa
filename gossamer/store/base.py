"""The store protocol every backend implements, and the types it speaks.

Writes are checked: ``create`` refuses an existing key, ``update`` and ``delete`` refuse a
stale ``expected_version`` (``Conflict``), so two writers never overwrite each other. Every
write bumps a store-wide ``revision`` and appends an event; ``watch(since)`` replays the
events after ``since`` and then follows new ones, so a watcher that restarts resumes where
it left off. Events older than the retention window are compacted away, and resuming
before them raises ``RevisionCompacted``: the watcher lists everything and continues from
``revision()``.

``write(ops)`` applies a batch of writes in one transaction: all of them or none. Each op
is checked as its single-write twin would be, and the first refusal raises that write's
error (``AlreadyExists``, ``NotFound``, ``Conflict``) with nothing stored and no event;
otherwise every op that changed something gets its event, in the batch's order, at
consecutive revisions. A caller that must not leave a half-done change behind (a Mesh and
its contents, an ``_apply``, one sync response) writes it as one batch.
"""

from __future__ import annotations

import base64
import builtins
import enum
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeAlias

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


@dataclass(frozen=True)
class Create:
    """Store a new resource at version 1; ``AlreadyExists`` if the key is taken."""

    resource: Resource


@dataclass(frozen=True)
class Update:
    """Replace spec and labels if the stored version is ``expected_version``."""

    resource: Resource
    expected_version: int


@dataclass(frozen=True)
class Put:
    """Create, or replace whatever is stored: for a copy of what another store owns (the
    sync). Content equal to the stored resource's changes nothing and makes no event,
    so re-receiving what a store holds wakes no watcher."""

    resource: Resource


@dataclass(frozen=True)
class Delete:
    """Remove a resource; a stale ``expected_version`` is a ``Conflict``. A missing one is
    ``NotFound``, unless ``missing_ok`` (then the op does nothing)."""

    kind: str
    name: str
    mesh: str = ""
    expected_version: int | None = None
    missing_ok: bool = False


WriteOp: TypeAlias = Create | Update | Put | Delete


def op_key(op: WriteOp) -> tuple[str, str, str]:
    """The ``Resource.key`` an op writes."""
    if isinstance(op, Delete):
        return (op.kind, op.mesh, op.name)
    return op.resource.key


def same_content(current: Resource, res: Resource) -> bool:
    """Whether writing ``res`` over ``current`` would change nothing a reader sees."""
    return current.spec == res.spec and dict(current.labels) == dict(res.labels)


def page_token(res: Resource) -> str:
    return base64.urlsafe_b64encode(json.dumps([res.mesh, res.name]).encode()).decode()


def labels_match(labels: Mapping[str, str], selector: Mapping[str, str] | None) -> bool:
    return not selector or all(labels.get(k) == v for k, v in selector.items())


class SingleWrites:
    """``create``, ``update`` and ``delete`` as one-op batches of the class's ``write``:
    every store (and store view) writes through that one path, so a single write is
    atomic, checked and fenced exactly as a batch is."""

    async def write(self, ops: Sequence[WriteOp]) -> builtins.list[Resource | None]:
        raise NotImplementedError

    async def create(self, res: Resource) -> Resource:
        return _stored(await self.write([Create(res)]))

    async def update(self, res: Resource, expected_version: int) -> Resource:
        return _stored(await self.write([Update(res, expected_version)]))

    async def delete(self, kind: str, name: str, mesh: str = "",
                     expected_version: int | None = None) -> None:
        await self.write([Delete(kind, name, mesh, expected_version)])


def _stored(results: builtins.list[Resource | None]) -> Resource:
    (res,) = results
    assert res is not None  # a create or update always stores its resource
    return res


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

    async def write(self, ops: Sequence[WriteOp]) -> builtins.list[Resource | None]:
        """Apply ``ops`` in one transaction, all or nothing (see the module's docstring).

        Returns, per op, the resource as stored (for a ``Delete``: as it was last stored;
        ``None`` for a ``missing_ok`` delete of nothing; for a ``Put`` that changed
        nothing: the stored resource).
        """
        ...

    async def revision(self) -> int:
        """The revision of the latest write (0 for an empty store)."""
        ...

    def watch(self, since: int) -> AsyncIterator[Event]:
        """Events with revision > ``since``, then new ones as they happen, forever."""
        ...

    async def close(self) -> None:
        ...
