"""Every policy kind: a realistic document parses and round-trips, and the registry holds
each kind once.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from gossamer.model.base import Scope, SyncDirection
from gossamer.model.registry import REGISTRY, parse_document, to_document
from tests.unit.policy_examples import POLICY_KINDS, VALID, _doc


def _assert_kept(original: Any, dumped: Any, path: str = "spec") -> None:
    """Everything the author wrote comes back (defaults may be added, nothing dropped)."""
    if isinstance(original, dict):
        assert isinstance(dumped, dict), path
        for key, value in original.items():
            assert key in dumped, f"{path}.{key} was dropped"
            _assert_kept(value, dumped[key], f"{path}.{key}")
    elif isinstance(original, list):
        assert isinstance(dumped, list) and len(dumped) == len(original), path
        for i, (a, b) in enumerate(zip(original, dumped, strict=True)):
            _assert_kept(a, b, f"{path}[{i}]")
    else:
        assert original == dumped, f"{path}: {original!r} became {dumped!r}"


def test_every_policy_kind_has_a_valid_example() -> None:
    assert sorted(VALID) == POLICY_KINDS


@pytest.mark.parametrize("kind", POLICY_KINDS)
def test_valid_document_round_trips(kind: str) -> None:
    spec = yaml.safe_load(VALID[kind])
    res = parse_document(_doc(kind, spec))
    assert res.type == kind
    out = to_document(res)
    _assert_kept(spec, out["spec"])
    again = parse_document(yaml.safe_load(yaml.safe_dump(out)))
    assert again.spec == res.spec
    assert to_document(again) == out


def test_registry_holds_every_policy_kind_once() -> None:
    policies = REGISTRY.policies()
    assert sorted(d.name for d in policies) == POLICY_KINDS
    for keys in ([d.path for d in policies], [d.noun for d in policies],
                 [d.alias for d in policies]):
        assert len(set(keys)) == len(POLICY_KINDS)
    for desc in policies:
        assert desc.scope is Scope.MESH
        assert desc.sync is SyncDirection.GLOBAL_TO_ZONES
        assert desc.noun == desc.name.lower()
        assert desc.path.islower() and desc.path.startswith(desc.noun[:-1])
        assert desc.description
        for key in (desc.name, desc.noun, desc.path, desc.alias):
            assert REGISTRY.get(key) is desc

