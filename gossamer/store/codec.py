"""How the SQL stores turn resources into rows and back.

Both SQL backends keep one row per resource (``labels`` and ``spec`` as JSON, the system
meta in columns) and one row per event whose ``document`` holds the resource as the
event saw it. The spec is stored as the kind's wire dict (``spec_to_dict``) and
validated back through the kind's spec model, so a row that no longer fits its kind
fails loudly as ``InvalidResource`` instead of travelling inward as a raw dict.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from gossamer.errors import AlreadyExists, Conflict, NotFound
from gossamer.model.base import Meta, Resource, spec_to_dict
from gossamer.model.registry import REGISTRY

DECODE_CACHE_SIZE = 10_000


class DecodeCache:
    """Resources already decoded, by row identity: a row at one revision never changes.

    Validating a spec through its pydantic model costs several times more than reading
    the row, and control planes list the same resources over and over, so each store
    keeps its last ``size`` decodes. The key holds version and modification time as well
    as the revision, so a database rebuilt under a running store cannot alias old rows.
    """

    def __init__(self, size: int = DECODE_CACHE_SIZE) -> None:
        self._size = size
        self._items: OrderedDict[tuple[Any, ...], Resource] = OrderedDict()

    def get(self, key: tuple[Any, ...], decode: Callable[[], Resource]) -> Resource:
        found = self._items.get(key)
        if found is not None:
            self._items.move_to_end(key)
            return found
        res = decode()
        if self._size > 0:
            self._items[key] = res
            if len(self._items) > self._size:
                self._items.popitem(last=False)
        return res


class Written:
    """The resources a store wrote itself, by revision, for its watch: an event at that
    revision is the very write, so its resource needs no decoding from the event row
    (a pydantic validation, the bulk of a watch's work on a big batch). Bounded like
    ``DecodeCache``; ``find`` checks the key of the event row against it."""

    def __init__(self, size: int = DECODE_CACHE_SIZE) -> None:
        self._size = size
        self._items: OrderedDict[int, Resource] = OrderedDict()

    def put(self, res: Resource) -> None:
        self._items[res.meta.revision] = res
        if len(self._items) > self._size:
            self._items.popitem(last=False)

    def find(self, revision: int, key: tuple[str, str, str]) -> Resource | None:
        """The resource written at ``revision`` if it is ``key``'s (watchers share it)."""
        res = self._items.get(revision)
        return res if res is not None and res.key == key else None


def dump_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def labels_json(res: Resource) -> str:
    return dump_json(dict(res.labels))


def spec_json(res: Resource) -> str:
    return dump_json(spec_to_dict(res.spec))


def load_resource(kind: str, mesh: str, name: str, labels: Any, spec: Any,
                  meta: Meta) -> Resource:
    """A stored row as a ``Resource``; ``labels``/``spec`` are JSON text or decoded dicts."""
    labels_dict = json.loads(labels) if isinstance(labels, str) else labels
    spec_dict = json.loads(spec) if isinstance(spec, str) else spec
    model = REGISTRY.get(kind).spec_model.model_validate(spec_dict)
    return Resource(type=kind, name=name, mesh=mesh, spec=model,
                    labels=dict(labels_dict or {}), meta=meta)


def event_document(res: Resource) -> str:
    """The JSON an event row keeps: labels, spec and the full meta of ``res``."""
    meta = res.meta
    return dump_json({
        "labels": dict(res.labels),
        "spec": spec_to_dict(res.spec),
        "version": meta.version,
        "creationTime": _iso(meta.creation_time),
        "modificationTime": _iso(meta.modification_time),
        "revision": meta.revision,
    })


def load_event_resource(kind: str, mesh: str, name: str, document: Any) -> Resource:
    doc: Mapping[str, Any] = json.loads(document) if isinstance(document, str) else document
    meta = Meta(version=int(doc["version"]),
                creation_time=_parse_time(doc.get("creationTime")),
                modification_time=_parse_time(doc.get("modificationTime")),
                revision=int(doc["revision"]))
    return load_resource(kind, mesh, name, doc.get("labels"), doc["spec"], meta)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse_time(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def parse_time(value: str) -> datetime:
    """A timestamp column written by ``isoformat()`` (SQLite keeps them as text)."""
    return datetime.fromisoformat(value)


def format_time(value: datetime) -> str:
    return value.isoformat()


# The errors every backend raises, worded like the memory store's.

def describe(kind: str, name: str, mesh: str) -> str:
    return f"{kind} {name!r}" + (f" in mesh {mesh!r}" if mesh else "")


def not_found(kind: str, name: str, mesh: str) -> NotFound:
    return NotFound(describe(kind, name, mesh) + " not found")


def already_exists(kind: str, name: str, mesh: str) -> AlreadyExists:
    return AlreadyExists(describe(kind, name, mesh) + " already exists")


def stale(kind: str, name: str, mesh: str, expected: int, actual: int) -> Conflict:
    return Conflict(f"{describe(kind, name, mesh)} is at version {actual}, not {expected}: "
                    "it changed since it was read; read it again and retry")
