"""Writing what a mirror accepted into the receiving control plane's store.

The receiver stores each resource under its *local key*: a zone keeps the global's
resources as they are; the global keeps a zone's resources under a name hashed with the
zone's (``zone_scoped_name``) so that zone A's ``backend-1`` never overwrites zone B's.
``ZoneRename`` maps both ways, so a restarted global can report to the zone exactly the
versions it holds (``load_mirror``) and the zone sends only the difference.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, replace

from gossamer.errors import InvalidResource
from gossamer.model.base import Meta, Resource
from gossamer.model.labels import (
    DISPLAY_NAME_LABEL,
    ORIGIN_GLOBAL,
    ORIGIN_LABEL,
    ORIGIN_ZONE,
    ZONE_LABEL,
)
from gossamer.store.base import Delete, ListQuery, Put, Store, WriteOp
from gossamer.store.turns import Turns
from sync.client_state import Applied, Mirror
from sync.codec import check_entry, decode, encode, kind_of, resource_key
from sync.messages import Entry, Response

CHUNK = 1000  # ops per transaction when a response is stored


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


class Decoded:
    """The resources of the response being applied, decoded once and in slices.

    A response of the global carries thousands of resources when a big batch was applied
    there, and each entry is decoded (a pydantic validation) twice: by the ``Mirror``'s
    check (``validate``) and by ``write_ops``. ``prepare``, awaited by the stream shell
    before the mirror takes the response, decodes every entry with turns of the event
    loop between (``gossamer.store.turns``); the check and the writes then read the
    result. Without it, the check alone held the zone's loop for 0.2-0.8 s at 5,000
    policies. Entries are keyed by their payload's bytes: equal bytes, equal resource.
    """

    def __init__(self) -> None:
        self._done: dict[bytes, Resource | InvalidResource] = {}

    async def prepare(self, response: Response) -> None:
        self._done = {}  # only the response at hand
        turns = Turns()
        for entry in response.resources.values():
            try:
                self._done[entry.payload.value] = decode(entry.payload)
            except InvalidResource as exc:
                self._done[entry.payload.value] = exc
            await turns.tick()

    def decode(self, entry: Entry) -> Resource:
        found = self._done.get(entry.payload.value)
        if found is None:
            return decode(entry.payload)
        if isinstance(found, InvalidResource):
            raise found
        return found

    def validate(self, type_url: str, name: str, entry: Entry) -> None:
        """A ``Mirror`` validate function: ``sync.codec.validate_entry`` on the decoded."""
        check_entry(type_url, name, self.decode(entry))


async def apply_to_store(store: Store, applied: Applied, rename: Rename,
                         held: Mapping[str, str] | None = None,
                         decoded: Decoded | None = None) -> None:
    """Persist one accepted response: upserts, then removals, in few transactions.

    ``Put`` leaves a resource stored with the same content alone (no version bump, no
    event), and a removal of what is already gone is no error, so writing a response
    twice (a reconnect before the ACK) changes nothing the second time. Chunks of
    ``CHUNK`` ops keep any one transaction (and the SQLite write lock) short; a failure
    part way leaves earlier chunks stored, which the next attempt's ``Put`` skips.
    """
    ops = await write_ops_sliced(applied, rename, decoded or Decoded())
    for start in range(0, len(ops), CHUNK):
        await store.write(ops[start:start + CHUNK])


async def write_ops_sliced(applied: Applied, rename: Rename, decoded: Decoded
                           ) -> list[WriteOp]:
    """``write_ops`` with turns of the event loop, from ``decoded``'s resources."""
    kind = kind_of(applied.type_url)
    ops: list[WriteOp] = []
    turns = Turns()
    for entry in applied.updated.values():
        ops.append(Put(rename.to_local(decoded.decode(entry))))
        await turns.tick()
    for key in applied.removed:
        mesh, _, name = key.rpartition("/")
        ops.append(Delete(kind, rename.local_name(mesh, name), mesh, missing_ok=True))
    return ops


def write_ops(applied: Applied, rename: Rename) -> list[WriteOp]:
    """The store writes that make one accepted response hold locally."""
    kind = kind_of(applied.type_url)
    ops: list[WriteOp] = [Put(rename.to_local(decode(entry.payload)))
                          for entry in applied.updated.values()]
    for key in applied.removed:
        mesh, _, name = key.rpartition("/")
        ops.append(Delete(kind, rename.local_name(mesh, name), mesh, missing_ok=True))
    return ops
