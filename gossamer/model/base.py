"""Resources, kind descriptors and the document codec.

A resource is ``{type, name, mesh?, labels, spec}`` plus system meta. Each kind lives in
one module that declares a pydantic spec model and one ``KindDescriptor``; the REST API,
the CLI and the sync are generic over descriptors, so a new kind touches one module.

Documents follow Kuma's universal shapes: policies carry their spec under ``spec:``,
while the older kinds (``Mesh``, ``Dataplane``, ``Zone``...) keep their fields at the top
level next to ``type`` and ``name`` (``spec_inline``). This module holds the shapes and the
checks every document goes through; the codec that looks a document's kind up
(``parse_document``, ``to_document``) is in ``gossamer.model.registry``, which imports
this module and never the other way round.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import pydantic
from pydantic import BaseModel

from gossamer.errors import FieldError, InvalidResource
from gossamer.model.kind_index import check_name as check_name  # re-exported: pydantic-free

MAX_LABELS = 64
META_KEYS = frozenset({"type", "name", "mesh", "labels", "creationTime", "modificationTime",
                       "version"})

_LABEL_KEY_RE = re.compile(r"^([a-z0-9.\-]+/)?[a-zA-Z0-9]([a-zA-Z0-9_.\-]*[a-zA-Z0-9])?$")
_LABEL_VALUE_RE = re.compile(r"^[a-zA-Z0-9_.\-:/]*$")


class Scope(enum.Enum):
    GLOBAL = "global"
    MESH = "mesh"


class SyncDirection(enum.Enum):
    """Which way a kind flows between the global and the zones (DESIGN §4)."""

    GLOBAL_TO_ZONES = "global-to-zones"
    ZONE_TO_GLOBAL = "zone-to-global"
    LOCAL = "local"


@dataclass(frozen=True)
class KindDescriptor:
    """Everything generic code needs to know about one resource kind.

    ``name`` is the ``type`` in documents (``MeshTimeout``); ``path`` the REST collection
    (``meshtimeouts``); ``noun``/``plural``/``alias`` what the CLI accepts.
    """

    name: str
    spec_model: type[BaseModel]
    scope: Scope
    path: str
    noun: str
    alias: str
    sync: SyncDirection
    spec_inline: bool = False
    is_policy: bool = False
    description: str = ""
    # Written by the control planes only (state, not intent): the API serves it read-only.
    system: bool = False

    @property
    def plural(self) -> str:
        return self.path

    @property
    def mesh_scoped(self) -> bool:
        return self.scope is Scope.MESH


@dataclass(frozen=True)
class Meta:
    """System meta a store assigns; ``version`` is the optimistic-concurrency counter."""

    version: int = 0
    creation_time: datetime | None = None
    modification_time: datetime | None = None
    revision: int = 0


@dataclass(frozen=True)
class Resource:
    type: str
    name: str
    spec: BaseModel
    mesh: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    meta: Meta = field(default_factory=Meta)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.type, self.mesh, self.name)

    def with_meta(self, meta: Meta) -> Resource:
        return replace(self, meta=meta)

    def spec_dict(self) -> dict[str, Any]:
        return spec_to_dict(self.spec)


def spec_to_dict(spec: BaseModel) -> dict[str, Any]:
    return spec.model_dump(mode="json", by_alias=True, exclude_none=True)


def format_loc(loc: tuple[int | str, ...], prefix: str = "") -> str:
    """``("to", 0, "default")`` → ``to[0].default`` (with an optional ``spec`` prefix)."""
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith(("function-", "tagged-union")) or "[" in part:
            continue  # pydantic's internal validator steps are not fields
        else:
            out += f".{part}" if out else part
    return out


def _pydantic_message(err: Mapping[str, Any]) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown field"
    if err["type"] == "missing":
        return "required field is missing"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


def field_errors(exc: pydantic.ValidationError, prefix: str = "") -> list[FieldError]:
    return [FieldError(format_loc(tuple(e["loc"]), prefix), _pydantic_message(e))
            for e in exc.errors()]


def validate_spec(desc: KindDescriptor, raw: Any) -> BaseModel:
    """Validate a spec dict against the kind's model, or raise ``InvalidResource``."""
    prefix = "" if desc.spec_inline else "spec"
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise InvalidResource(f"invalid {desc.name}", [FieldError(prefix, "expected a mapping")])
    try:
        return desc.spec_model.model_validate(dict(raw))
    except pydantic.ValidationError as exc:
        raise InvalidResource(f"invalid {desc.name}", field_errors(exc, prefix)) from None


def check_labels(value: Any) -> list[FieldError]:
    if value is None:
        return []
    if not isinstance(value, Mapping):
        return [FieldError("labels", "expected a mapping of strings")]
    if len(value) > MAX_LABELS:
        return [FieldError("labels", f"more than {MAX_LABELS} labels")]
    errors = []
    for key, val in value.items():
        if not isinstance(key, str) or len(key) > 253 or not _LABEL_KEY_RE.match(key):
            errors.append(FieldError("labels", f"invalid label key {key!r}"))
        elif not isinstance(val, str) or len(val) > 253 or not _LABEL_VALUE_RE.match(val):
            errors.append(FieldError(f"labels.{key}", "expected a string of at most 253 "
                                                      "letters, digits, '-', '_', '.', ':', '/'"))
    return errors
