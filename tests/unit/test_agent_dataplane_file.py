"""The Dataplane file: templating from --dataplane-var, parsing and validation errors."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.agent import dataplane_file
from proxy.agent.errors import DataplaneFileError, InputError

BACKEND = """\
type: Dataplane
mesh: default
name: {{ name }}
networking:
  address: "{{ address }}"
  inbound:
  - port: 18080
    servicePort: 8080
    tags: {gossamer.io/service: backend, gossamer.io/protocol: http, version: {{version}}}
  outbound:
  - port: 20001
    tags: {gossamer.io/service: web}
"""
VARS = {"name": "backend-1", "address": "10.0.0.7", "version": "v1"}


def test_placeholders_are_filled_quoted_or_not() -> None:
    loaded = dataplane_file.parse(BACKEND, VARS)
    assert loaded.name == "backend-1"
    assert loaded.mesh == "default"
    assert loaded.document["networking"]["address"] == "10.0.0.7"
    assert loaded.document["networking"]["inbound"][0]["tags"]["version"] == "v1"
    assert loaded.services == ("backend",)
    assert (loaded.admin_port, loaded.transparent) == (None, False)
    assert loaded.unused_vars == ()


def test_registration_json_is_the_normalised_document() -> None:
    loaded = dataplane_file.parse(BACKEND.replace("mesh: default\n", ""), VARS)
    doc = json.loads(loaded.registration_json())
    assert doc["type"] == "Dataplane"
    assert doc["mesh"] == "default"  # filled in
    assert doc["networking"]["inbound"][0]["servicePort"] == 8080


def test_an_unknown_placeholder_is_named() -> None:
    with pytest.raises(DataplaneFileError, match=r"\{\{ address \}\}.*--dataplane-var address="):
        dataplane_file.parse(BACKEND, {"name": "backend-1", "version": "v1"})


def test_a_malformed_placeholder_is_named() -> None:
    with pytest.raises(DataplaneFileError, match="malformed placeholder"):
        dataplane_file.parse(BACKEND.replace("{{ name }}", "{{ na me }}"), VARS)


def test_unused_variables_are_reported() -> None:
    loaded = dataplane_file.parse(BACKEND, {**VARS, "zone": "east"})
    assert loaded.unused_vars == ("zone",)


@pytest.mark.parametrize("item, message", [
    ("address", "expected NAME=VALUE"),
    ("1st=x", "a name is a letter"),
    ("address=10.0.0.7\n  admin: {port: 1}", "only letters, digits"),
    ('address=x", "evil', "only letters, digits"),
    ("version=v1,gossamer.io/service:web", "only letters, digits"),
    ("address=" + "a" * 254, "longer than 253"),
])
def test_values_cannot_change_the_structure(item: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        dataplane_file.parse_vars([item])


def test_a_variable_given_twice_is_refused() -> None:
    with pytest.raises(InputError, match="given twice"):
        dataplane_file.parse_vars(["a=1", "a=2"])


def test_values_may_hold_ipv6_and_host_ports() -> None:
    assert dataplane_file.parse_vars(["a=fd00::1", "b=host:80", "c="]) == {
        "a": "fd00::1", "b": "host:80", "c": ""}


def test_field_errors_carry_their_paths() -> None:
    bad = BACKEND.replace("port: 18080", "port: 70000").replace("servicePort: 8080",
                                                                 "servicePort: 8080\n    extra: 1")
    with pytest.raises(DataplaneFileError) as info:
        dataplane_file.parse(bad, VARS, "backend.yaml")
    paths = {e.path for e in info.value.field_errors}
    assert "networking.inbound[0].port" in paths
    assert "networking.inbound[0].extra" in paths
    lines = info.value.lines()
    assert lines[0] == "backend.yaml: invalid Dataplane backend-1"
    assert any(line.startswith("  networking.inbound[0].port: ") for line in lines[1:])


@pytest.mark.parametrize("text, message", [
    ("type: Dataplane\nname: x: y\n", "not valid YAML.*line 2"),
    ("", "exactly one document, found 0"),
    ("type: Dataplane\n---\ntype: Dataplane\n", "exactly one document, found 2"),
    ("- a\n- b\n", "must hold a mapping"),
    ("type: MeshTimeout\nname: x\n", "must describe a Dataplane.*'MeshTimeout'"),
])
def test_documents_that_are_not_a_dataplane(text: str, message: str) -> None:
    with pytest.raises(DataplaneFileError, match=message):
        dataplane_file.parse(text, {})


def test_load_reads_the_file(tmp_path: Path) -> None:
    path = tmp_path / "backend.yaml"
    path.write_text(BACKEND)
    assert dataplane_file.load(path, VARS).name == "backend-1"
    with pytest.raises(InputError, match="cannot read the Dataplane file"):
        dataplane_file.load(tmp_path / "missing.yaml", VARS)
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(DataplaneFileError, match="not UTF-8"):
        dataplane_file.load(path, VARS)


_values = st.text(alphabet="abc019.-_:/", max_size=12)


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=300), values=st.dictionaries(
    st.sampled_from(["name", "address", "version"]), _values))
def test_any_text_parses_or_fails_with_a_file_error(text: str, values: dict[str, str]) -> None:
    with contextlib.suppress(DataplaneFileError):
        dataplane_file.parse(text, values)


@settings(max_examples=200, deadline=None)
@given(cut=st.integers(0, len(BACKEND)), value=_values)
def test_any_prefix_or_value_parses_or_fails_with_a_file_error(cut: int, value: str) -> None:
    with contextlib.suppress(DataplaneFileError):
        dataplane_file.parse(BACKEND[:cut], {**VARS, "address": value})
