"""Gossamer resources as delta-xDS entries: ``gossamer.sync.v1.Resource`` inside an ``Any``.

Naming on the zone sync links (the engine itself is agnostic):

* the type URL of a request or response names the kind: ``gossamer.io/MeshTimeout``
  (``kind_type_url``); every resource's ``Any`` is a ``gossamer.sync.v1.Resource``;
* a resource's delta name is ``<mesh>/<name>`` for mesh-scoped kinds and ``<name>`` for
  global ones (``resource_key``): names are unique per mesh, and a resource name
  cannot contain ``/``;
* its version is a digest of its deterministic serialization (``encode``), so equal
  content always has the same version and changed content a different one, whatever
  store produced it and across restarts of the publisher.

``decode`` goes back through ``parse_document``, so a resource from the wire is validated
exactly like one applied by a user; a bad one raises ``InvalidResource``, which makes
``validate_entry`` usable as a ``Mirror``'s validate function (the resource is NACKed).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from google.protobuf import timestamp_pb2
from google.protobuf.message import DecodeError

from gossamer.errors import FieldError, InvalidResource
from gossamer.model.base import Meta, Resource
from gossamer.model.registry import parse_document
from sync.messages import Entry, Payload
from sync.v1 import sync_pb2

RESOURCE_TYPE_URL = "type.googleapis.com/" + sync_pb2.Resource.DESCRIPTOR.full_name
KIND_PREFIX = "gossamer.io/"
_DIGEST_CHARS = 20


def kind_type_url(kind: str) -> str:
    return KIND_PREFIX + kind


def kind_of(type_url: str) -> str:
    if not type_url.startswith(KIND_PREFIX):
        raise InvalidResource(f"not a Gossamer kind type URL: {type_url!r}")
    return type_url.removeprefix(KIND_PREFIX)


def resource_key(res: Resource) -> str:
    return f"{res.mesh}/{res.name}" if res.mesh else res.name


def to_proto(res: Resource) -> sync_pb2.Resource:
    msg = sync_pb2.Resource(type=res.type, mesh=res.mesh, name=res.name,
                            labels=dict(res.labels), version=res.meta.version,
                            spec_json=canonical_json(res.spec_dict()))
    if res.meta.creation_time is not None:
        msg.creation_time.FromDatetime(res.meta.creation_time)
    if res.meta.modification_time is not None:
        msg.modification_time.FromDatetime(res.meta.modification_time)
    return msg


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def encode(res: Resource) -> Entry:
    """The entry a publisher puts in its desired snapshot for ``res``."""
    value = to_proto(res).SerializeToString(deterministic=True)
    version = hashlib.sha256(value).hexdigest()[:_DIGEST_CHARS]
    return Entry(version=version, payload=Payload(RESOURCE_TYPE_URL, value))


def decode(payload: Payload, registry: Any = None) -> Resource:
    """Parse and validate a resource from the wire, or raise ``InvalidResource``."""
    if payload.type_url != RESOURCE_TYPE_URL:
        raise InvalidResource(f"expected a {RESOURCE_TYPE_URL}, got {payload.type_url!r}")
    msg = sync_pb2.Resource()
    try:
        msg.ParseFromString(payload.value)
        spec = json.loads(msg.spec_json) if msg.spec_json else {}
    except (DecodeError, ValueError) as exc:
        raise InvalidResource(f"undecodable resource: {exc}") from None
    res = parse_document(_document(msg, spec, registry), registry)
    meta = Meta(version=msg.version, creation_time=_time(msg, "creation_time"),
                modification_time=_time(msg, "modification_time"))
    return res.with_meta(meta)


def validate_entry(type_url: str, name: str, entry: Entry) -> None:
    """A ``Mirror`` validate function: the entry must decode to a resource of that key."""
    check_entry(type_url, name, decode(entry.payload))


def check_entry(type_url: str, name: str, res: Resource) -> None:
    """``res``, decoded from the entry ``name`` of ``type_url``, must be of that key."""
    if res.type != kind_of(type_url) or resource_key(res) != name:
        raise InvalidResource(f"entry {name!r} of {type_url} holds {res.type} "
                              f"{resource_key(res)!r}")


def _document(msg: sync_pb2.Resource, spec: Any, registry: Any) -> dict[str, Any]:
    from gossamer.model.registry import REGISTRY

    desc = (registry or REGISTRY).get(msg.type)
    doc: dict[str, Any] = {"type": msg.type, "name": msg.name, "labels": dict(msg.labels)}
    if msg.mesh:
        doc["mesh"] = msg.mesh
    if not desc.spec_inline:
        doc["spec"] = spec
    elif isinstance(spec, dict):
        doc.update({k: v for k, v in spec.items() if k not in doc})
    else:
        raise InvalidResource(f"invalid {msg.type}", [FieldError("", "expected a mapping")])
    return doc


def _time(msg: sync_pb2.Resource, name: str) -> datetime | None:
    if not msg.HasField(name):
        return None
    stamp: timestamp_pb2.Timestamp = getattr(msg, name)
    return stamp.ToDatetime(tzinfo=UTC)
