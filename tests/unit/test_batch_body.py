"""``BatchReader`` decodes a ``/_apply`` body as ``json.loads`` would, a document per step.

The invariant, h11-style: for any bytes, the reader gives exactly ``json.loads``'s
object when that is a JSON object, and raises ``InvalidResource`` (a 400) otherwise:
never another exception, never a different value. Fuzzed on whole bodies and on every
prefix of one.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gossamer.api.batch_body import BatchReader
from gossamer.errors import InvalidResource

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=5), inner, max_size=4), max_leaves=8)
bodies = st.dictionaries(st.sampled_from(["documents", "dryRun", "x", ""]),
                         values | st.lists(values, max_size=4), max_size=3)


def read(body: bytes) -> dict[str, Any]:
    reader = BatchReader(body)
    for _ in reader.steps():
        pass
    return reader.value


def expected(body: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def check(body: bytes) -> None:
    want = expected(body)
    if want is None:
        with pytest.raises(InvalidResource):
            read(body)
    else:
        assert read(body) == want


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(bodies, st.sampled_from([None, 0, 2]))
def test_any_object_reads_as_json_loads_reads_it(body: dict[str, Any], indent: int | None
                                                 ) -> None:
    check(json.dumps(body, indent=indent).encode())


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(bodies)
def test_every_prefix_reads_or_is_refused_as_a_400(body: dict[str, Any]) -> None:
    text = json.dumps(body).encode()
    for end in range(len(text) + 1):
        check(text[:end])


@settings(max_examples=300)
@given(st.binary(max_size=60))
def test_garbage_is_refused_as_a_400_or_read_as_json_loads_reads_it(body: bytes) -> None:
    check(body)


@pytest.mark.parametrize("body", [b'{"documents": [1, 2', b'[1]', b'"x"', b'{"a": 1} x',
                                  b'{"documents": [1,]}', b'{"a" 1}', b"\xff{}", b""])
def test_the_refusal_names_the_body(body: bytes) -> None:
    with pytest.raises(InvalidResource) as refused:
        read(body)
    assert refused.value.field_errors[0].path == "body"


def test_each_document_is_a_step_of_its_own() -> None:
    body = json.dumps({"dryRun": False, "documents": [{"n": i} for i in range(50)]}).encode()
    reader = BatchReader(body)
    steps = sum(1 for _ in reader.steps())
    assert steps == 51
    assert reader.value["documents"][49] == {"n": 49}


def test_a_repeated_member_keeps_its_last_value_as_json_loads_does() -> None:
    body = b'{"documents": [1], "documents": [2, 3]}'
    assert read(body) == json.loads(body) == {"documents": [2, 3]}
