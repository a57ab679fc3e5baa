"""Writing what a mirror accepted into the receiving control plane's store.

The receiver stores each resource under its *local key*: a zone keeps the global's
resources as they are; the global keeps a zone's resources under a name hashed with the
zone's (``zone_scoped_name``) so that zone A's ``backend-1`` never overwrites zone B's.
``ZoneRename`` maps both ways, so a restarted global can report to the zone exactly the
versions it holds (``load_mirror``) and the zone sends only the difference.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, replace

from gossamer.errors import AlreadyExists, Conflict, NotFound
from gossamer.model.base import Meta, Resource
from gossamer.store.base import ListQuery, Store
from sync.client_state import Applied, Mirror
from sync.codec import decode, encode, kind_of, resource_key

ORIGIN_LABEL = "gossamer.io/origin"
ZONE_LABEL = "gossamer.io/zone"
DISPLAY_NAME_LABEL = "gossamer.io/display-name"
ORIGIN_GLOBAL = "global"
ORIGIN_ZONE = "zone"
_MAX_ATTEMPTS = 5


def zone_scoped_name(zone: str, mesh: str, name: str) -> str:
    digest = hashlib.sha256(f"{zone}/{mesh}/{name}".encode()).hexdigest()[:16]
    return f"{name[:200]}-{digest}"


@dataclass(frozen=True)
class Rename:
    """How a received resource is named locally; the identity by default."""

    def local_name(self, mesh: str, name: str) -> str:
        return name

    def to_local(self, res: Resource) -> Resource:
        return res

    def to_wire(self, res: Resource) -> Resource | None:
        """The resource as the publisher sent it, or None if it is not from this link."""
        return res if res.labels.get(ORIGIN_LABEL) == ORIGIN_GLOBAL else None


@dataclass(frozen=True)
class ZoneRename(Rename):
    """At the global: zone resources are stored under a zone-hashed name."""

    zone: str = ""

    def local_name(self, mesh: str, name: str) -> str:
        return zone_scoped_name(self.zone, mesh, name)

    def to_local(self, res: Resource) -> Resource:
        labels = {**res.labels, DISPLAY_NAME_LABEL: res.name}
        return replace(res, name=self.local_name(res.mesh, res.name), labels=labels)

    def to_wire(self, res: Resource) -> Resource | None:
        labels = dict(res.labels)
        if labels.get(ZONE_LABEL) != self.zone or labels.get(ORIGIN_LABEL) != ORIGIN_ZONE:
            return None
        display = labels.pop(DISPLAY_NAME_LABEL, None)
        if display is None:
            return None
        return replace(res, name=display, labels=labels, meta=Meta())


async def load_mirror(mirror: Mirror, store: Store, rename: Rename) -> None:
    """Rebuild the mirror from the store: what this side holds from the link."""
    for type_url in mirror.type_urls:
        page = await store.list(ListQuery(kind_of(type_url)))
        entries = {}
        for res in page.items:
            wire = rename.to_wire(res.with_meta(Meta()))
            if wire is not None:
                entries[resource_key(wire)] = encode(wire)
        mirror.load(type_url, entries)


async def apply_to_store(store: Store, applied: Applied, rename: Rename,
                         held: Mapping[str, str] | None = None) -> None:
    """Persist one accepted response: upserts, then removals."""
    kind = kind_of(applied.type_url)
    for entry in applied.updated.values():
        await _upsert(store, rename.to_local(decode(entry.payload)))
    for key in applied.removed:
        mesh, _, name = key.rpartition("/")
        with contextlib.suppress(NotFound):
            await store.delete(kind, rename.local_name(mesh, name), mesh)


async def _upsert(store: Store, res: Resource) -> None:
    for _ in range(_MAX_ATTEMPTS):
        try:
            current = await store.get(res.type, res.name, res.mesh)
        except NotFound:
            try:
                await store.create(res)
                return
            except AlreadyExists:
                continue
        if current.spec == res.spec and dict(current.labels) == dict(res.labels):
            return
        try:
            await store.update(res, current.meta.version)
            return
        except (Conflict, NotFound):
            continue
    raise Conflict(f"{res.type} {res.name!r} kept changing while the sync wrote it")
