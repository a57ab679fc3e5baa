"""The registry of resource kinds, discovered from the modules of ``gossamer.model``.

A kind module exposes ``DESCRIPTOR`` (and, for a second kind defined beside it,
``GLOBAL_DESCRIPTOR`` or ``REQUEST_DESCRIPTOR``); adding a module adds the kind to the
API, the CLI and the sync.
Lookups accept the type name, the CLI noun, the plural/REST path or the short alias,
case-insensitively, so ``get mtp``, ``get meshtrafficpermissions`` and
``type: MeshTrafficPermission`` all find the same kind.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator

import gossamer.model as model_pkg
from gossamer.errors import FieldError, InvalidResource
from gossamer.model.base import KindDescriptor


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


REGISTRY = discover()
