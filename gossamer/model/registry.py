"""The registry of resource kinds, discovered from the modules of ``gossamer.model``.

A kind module exposes ``DESCRIPTOR`` (and, for a second kind defined beside it,
``GLOBAL_DESCRIPTOR`` or ``REQUEST_DESCRIPTOR``); adding a module adds the kind to the
API, the CLI and the sync.
Lookups accept the type name, the CLI noun, the plural/REST path or the short alias,
case-insensitively, so ``get mtp``, ``get meshtrafficpermissions`` and
``type: MeshTrafficPermission`` all find the same kind.

The document codec lives here too: ``parse_document`` is the one way a dict becomes a
``Resource`` and ``to_document`` the one way back; both look the kind up in a registry
(``REGISTRY`` unless given one). ``gossamer.model.base`` holds the shapes and checks they
use and imports nothing from here, so the two modules form no cycle.

``REGISTRY`` is discovered on first use, not at import: importing this module costs no
kind module, so a process that needs one kind (the sidecar agent checks its Dataplane
with ``Registry([dataplane.DESCRIPTOR])``) never loads the pydantic models of the others.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator, Mapping
from typing import Any

import gossamer.model as model_pkg
from gossamer.errors import FieldError, InvalidResource
from gossamer.model.base import (
    META_KEYS,
    KindDescriptor,
    Resource,
    check_labels,
    check_name,
    validate_spec,
)


class Registry:
    def __init__(self, descriptors: list[KindDescriptor]) -> None:
        self._kinds: dict[str, KindDescriptor] = {}
        self._lookup: dict[str, KindDescriptor] = {}
        for desc in descriptors:
            if desc.name in self._kinds:
                raise ValueError(f"kind {desc.name} registered twice")
            self._kinds[desc.name] = desc
            for key in (desc.name, desc.noun, desc.path, desc.alias):
                other = self._lookup.get(key.lower())
                if other is not None and other is not desc:
                    raise ValueError(f"{key!r} names both {other.name} and {desc.name}")
                self._lookup[key.lower()] = desc

    def get(self, name: str) -> KindDescriptor:
        desc = self._lookup.get(name.lower()) if isinstance(name, str) else None
        if desc is None:
            raise InvalidResource("unknown resource type",
                                  [FieldError("type", f"unknown type {name!r}")])
        return desc

    def find(self, name: str) -> KindDescriptor | None:
        return self._lookup.get(name.lower())

    def by_path(self, path: str) -> KindDescriptor | None:
        desc = self._lookup.get(path.lower())
        return desc if desc is not None and desc.path == path else None

    def __iter__(self) -> Iterator[KindDescriptor]:
        return iter(sorted(self._kinds.values(), key=lambda d: d.name))

    def policies(self) -> list[KindDescriptor]:
        return [d for d in self if d.is_policy]


def discover() -> Registry:
    descriptors: list[KindDescriptor] = []
    for info in sorted(pkgutil.iter_modules(model_pkg.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"gossamer.model.{info.name}")
        for attr in ("DESCRIPTOR", "GLOBAL_DESCRIPTOR", "REQUEST_DESCRIPTOR"):
            desc = getattr(module, attr, None)
            if isinstance(desc, KindDescriptor):
                descriptors.append(desc)
    return Registry(descriptors)


_discovered: Registry | None = None


def _registry() -> Registry:
    """Every kind, discovered once."""
    global _discovered
    if _discovered is None:
        _discovered = discover()
    return _discovered


def __getattr__(name: str) -> Registry:
    """``REGISTRY``, built on first access (PEP 562)."""
    if name == "REGISTRY":
        return _registry()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def parse_document(doc: Any, registry: Registry | None = None) -> Resource:
    """Turn one YAML/JSON document into a validated ``Resource`` (or ``InvalidResource``).

    Collects every problem it can find before raising, so one round trip shows them all.
    """
    reg = registry or _registry()
    if not isinstance(doc, Mapping):
        raise InvalidResource("invalid document", [FieldError("", "expected a mapping")])
    kind = doc.get("type")
    if not isinstance(kind, str) or not kind:
        raise InvalidResource("invalid document", [FieldError("type", "required field is missing")])
    desc = reg.get(kind)
    errors: list[FieldError] = []
    errors += check_name(doc.get("name"))
    errors += check_labels(doc.get("labels"))
    mesh = doc.get("mesh", "")
    if desc.mesh_scoped:
        mesh = mesh or "default"
        errors += check_name(mesh, "mesh")
    elif mesh:
        errors.append(FieldError("mesh", f"{desc.name} is not mesh-scoped"))
    if desc.spec_inline:
        raw: Any = {k: v for k, v in doc.items() if k not in META_KEYS}
    else:
        unknown = [k for k in doc if k not in META_KEYS and k != "spec"]
        errors += [FieldError(k, "unknown field") for k in unknown]
        raw = doc.get("spec")
    try:
        spec = validate_spec(desc, raw)
    except InvalidResource as exc:
        errors += exc.field_errors
    if errors:
        name = doc.get("name")
        label = f"{desc.name} {name}" if isinstance(name, str) else desc.name
        raise InvalidResource(f"invalid {label}", errors)
    return Resource(type=desc.name, name=doc["name"], mesh=mesh, spec=spec,
                    labels=dict(doc.get("labels") or {}))


def to_document(res: Resource, registry: Registry | None = None,
                with_meta: bool = True) -> dict[str, Any]:
    """A ``Resource`` as the document ``parse_document`` reads back (with system meta
    unless ``with_meta`` is false)."""
    desc = (registry or _registry()).get(res.type)
    doc: dict[str, Any] = {"type": res.type, "name": res.name}
    if desc.mesh_scoped:
        doc["mesh"] = res.mesh
    if res.labels:
        doc["labels"] = dict(res.labels)
    if with_meta and res.meta.version:
        doc["version"] = res.meta.version
        if res.meta.creation_time:
            doc["creationTime"] = res.meta.creation_time.isoformat()
        if res.meta.modification_time:
            doc["modificationTime"] = res.meta.modification_time.isoformat()
    spec = res.spec_dict()
    if desc.spec_inline:
        doc.update(spec)
    else:
        doc["spec"] = spec
    return doc
