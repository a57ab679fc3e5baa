"""Every policy kind: bad documents are refused with the exact field path and a message a
person can act on, and any corruption of a valid one either parses or raises
``InvalidResource`` (Hypothesis).
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from gossamer.errors import InvalidResource
from gossamer.model.registry import parse_document, to_document
from tests.unit.policy_examples import POLICY_KINDS, VALID, _doc
from tests.unit.policy_invalid_cases import INVALID


def test_every_policy_kind_has_invalid_cases() -> None:
    assert sorted({case[0] for case in INVALID}) == POLICY_KINDS


@pytest.mark.parametrize(("kind", "spec", "path", "fragment"), INVALID,
                         ids=[f"{c[0]}:{c[2]}" for c in INVALID])
def test_invalid_document_names_the_field(kind: str, spec: str, path: str,
                                          fragment: str) -> None:
    with pytest.raises(InvalidResource) as info:
        parse_document(_doc(kind, yaml.safe_load(spec)))
    errors = {e.path: e.message for e in info.value.field_errors}
    assert path in errors, f"no error at {path}; got {errors}"
    assert fragment in errors[path], errors[path]


# YAML's scalars and containers, including the awkward ones (NaN, huge ints, odd keys).
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats()
    | st.text(max_size=20) | st.sampled_from(["5s", "0s", "/", "a:1", "Mesh", "503", "-1"]),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, (*prefix, i))
    return out


def _replace(node: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    copy = dict(node) if isinstance(node, dict) else list(node)
    copy[path[0]] = _replace(node[path[0]], path[1:], value)
    return copy


_SPECS = {kind: yaml.safe_load(text) for kind, text in VALID.items()}


_PATHS = {kind: _paths(spec) for kind, spec in _SPECS.items()}


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_corruption_parses_or_raises_invalid_resource(data: st.DataObject) -> None:
    """Like h11's fuzz invariant: garbage anywhere in a spec is the caller's error, never
    a crash (a TypeError from a validator would surface as a 500)."""
    kind = data.draw(st.sampled_from(POLICY_KINDS))
    spec = _SPECS[kind]
    path = data.draw(st.sampled_from(_PATHS[kind]))
    corrupted = _replace(spec, path, data.draw(_JSON))
    try:
        res = parse_document(_doc(kind, corrupted))
    except InvalidResource as exc:
        assert exc.field_errors
    else:
        assert parse_document(to_document(res)).spec == res.spec

