"""``gossamer.model.kind_index`` against the registry it mirrors: the same kinds, names,
scope and policy flag, and every lookup the registry answers answered the same way."""

from __future__ import annotations

import pytest

from gossamer.model.base import KindDescriptor
from gossamer.model.kind_index import KINDS, KindName, check_name, find_kind
from gossamer.model.registry import REGISTRY


def _as_kind_name(d: KindDescriptor) -> KindName:
    return KindName(d.name, d.path, d.noun, d.alias, d.mesh_scoped, d.is_policy,
                    d.spec_model.__module__.removeprefix("gossamer.model."))


def test_the_table_is_the_registry() -> None:
    assert sorted(KINDS, key=lambda k: k.name) == [_as_kind_name(d) for d in REGISTRY]


@pytest.mark.parametrize("desc", list(REGISTRY), ids=lambda d: d.name)
def test_every_registry_key_finds_the_same_kind(desc: KindDescriptor) -> None:
    for key in (desc.name, desc.noun, desc.path, desc.alias, desc.path.upper(),
                desc.path.replace("-", "")):
        found = find_kind(key)
        assert found is not None and found.name == desc.name, key


def test_unknown_names_find_nothing() -> None:
    assert find_kind("meshez") is None
    assert find_kind("") is None


def test_check_name() -> None:
    assert check_name("web-1.v2") == []
    assert [e.message for e in check_name("Web")] == [
        "expected lower-case letters, digits, '-' and '.', starting and ending with a letter "
        "or digit"]
    assert check_name("a" * 254, "mesh")[0].path == "mesh"
    assert check_name(None)[0].message == "required, a non-empty string"
