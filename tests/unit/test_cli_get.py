"""``gossamer get`` and ``delete`` against the in-memory fake of docs/api.md: pages followed
to the last, all meshes and label selectors, columns, YAML and JSON that apply back, missing
and empty results, unknown kinds.
"""

from __future__ import annotations

import json

import yaml

from tests.unit.cli_fake_cp import FakeControlPlane, Invoke, _no_traceback


def _seed(fake: FakeControlPlane, count: int, mesh: str = "default") -> None:
    if mesh != "default":
        fake.put({"type": "Mesh", "name": mesh})
    for i in range(count):
        fake.put({"type": "MeshTimeout", "name": f"t{i:02d}", "mesh": mesh,
                  "labels": {"team": "a" if i % 2 else "b"},
                  "spec": {"targetRef": {"kind": "MeshService", "name": "web"},
                           "rules": [{"default": {"idleTimeout": "1h"}}]}})


def test_get_follows_next_tokens_to_the_last_page(cli: Invoke, fake: FakeControlPlane) -> None:
    fake.page_size = 3
    _seed(fake, 7)
    result = cli("get", "meshtimeouts")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "MESH", "TARGETREF", "AGE"]
    assert [line.split() for line in lines[1:]] == [
        [f"t{i:02d}", "default", "MeshService/web", "3h"] for i in range(7)]
    assert fake.paths("GET") == ["/meshes/default/meshtimeouts"] * 3


def test_get_all_meshes_and_label_selector(cli: Invoke, fake: FakeControlPlane) -> None:
    _seed(fake, 2)
    _seed(fake, 2, mesh="payments")
    result = cli("get", "mt", "-A", "-l", "team=a")
    assert result.exit_code == 0, result.output
    rows = [line.split()[:2] for line in result.stdout.splitlines()[1:]]
    assert rows == [["t01", "default"], ["t01", "payments"]]
    assert fake.paths("GET") == ["/meshtimeouts"]


def test_get_global_kind_has_no_mesh_column(cli: Invoke, fake: FakeControlPlane) -> None:
    result = cli("get", "meshes")
    assert result.stdout.splitlines()[0].split() == ["NAME", "MTLS", "AGE"]
    assert result.stdout.splitlines()[1].split() == ["default", "off", "3h"]
    assert cli("get", "meshes", "-m", "default").exit_code == 2


def test_get_yaml_and_json_lists_apply_back(cli: Invoke, fake: FakeControlPlane) -> None:
    _seed(fake, 3)
    as_yaml = cli("get", "meshtimeout", "-o", "yaml").stdout
    assert [d["name"] for d in yaml.safe_load_all(as_yaml)] == ["t00", "t01", "t02"]
    assert cli("apply", "-f", "-", input=as_yaml).stdout.count("unchanged") == 3
    as_json = cli("get", "meshtimeout", "-o", "json").stdout
    assert len(json.loads(as_json)["items"]) == 3
    path_free = cli("apply", "-f", "-", input=as_json)
    assert path_free.exit_code == 0, path_free.output
    assert path_free.stdout.count("unchanged") == 3


def test_get_one_as_yaml(cli: Invoke, fake: FakeControlPlane) -> None:
    _seed(fake, 1)
    result = cli("get", "MeshTimeout", "t00", "-o", "yaml")
    assert result.exit_code == 0, result.output
    doc = yaml.safe_load(result.stdout)
    assert doc["name"] == "t00"
    assert doc["spec"]["targetRef"] == {"kind": "MeshService", "name": "web"}
    assert fake.paths("GET") == ["/meshes/default/meshtimeouts/t00"]


def test_get_missing_prints_one_line(cli: Invoke) -> None:
    result = cli("get", "meshtimeout", "nope")
    assert result.exit_code == 1
    assert result.stderr == "error: MeshTimeout nope not found\n"
    _no_traceback(result)


def test_get_empty_list_says_so(cli: Invoke) -> None:
    result = cli("get", "meshtimeouts", "-m", "default")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "No meshtimeouts found in mesh default." in result.stderr


def test_unknown_kind_is_a_usage_error(cli: Invoke, fake: FakeControlPlane) -> None:
    result = cli("get", "widgets")
    assert result.exit_code == 2
    assert "unknown kind 'widgets'" in result.stderr
    assert fake.requests == []


def test_delete(cli: Invoke, fake: FakeControlPlane) -> None:
    _seed(fake, 2)
    result = cli("delete", "meshtimeout", "t01")
    assert result.exit_code == 0, result.output
    assert result.stdout == "meshtimeout/t01 deleted\n"
    assert ("MeshTimeout", "default", "t01") not in fake.store
    assert ("MeshTimeout", "default", "t00") in fake.store
    assert cli("delete", "meshtimeout", "../../meshes/default").exit_code == 2

