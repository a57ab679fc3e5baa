"""``gossamer apply`` against the in-memory fake of docs/api.md: one batch of every document,
local problems reported with nothing sent, directories and stdin, dry runs, refusals
located by file and document, and bounded input.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.unit.cli_fake_cp import FakeControlPlane, Invoke, _no_traceback

POLICIES = """\
type: MeshTimeout
name: slow-backend
mesh: default
spec:
  targetRef: {kind: Mesh}
  to:
  - targetRef: {kind: MeshService, name: backend}
    default: {http: {requestTimeout: 30s}}
---
# an empty document is skipped
---
type: MeshTimeout
name: fast-frontend
spec:
  targetRef: {kind: MeshService, name: frontend}
  to:
  - targetRef: {kind: Mesh}
    default: {connectionTimeout: 2s}
"""


INVALID = """\
type: MeshTimeout
name: good
spec:
  targetRef: {kind: Mesh}
  to: [{targetRef: {kind: Mesh}, default: {idleTimeout: 1h}}]
---
type: MeshTimeout
name: bad-duration
spec:
  targetRef: {kind: Mesh}
  to:
  - targetRef: {kind: Mesh}
    default: {http: {requestTimeout: soon}}
---
type: MeshTimeout
name: Not_A_Name
spec:
  targetRef: {kind: Mesh}
  to: [{targetRef: {kind: Mesh}, default: {idleTimeout: 1h}}]
---
type: NoSuchKind
name: x
"""


SPEC = "spec: {targetRef: {kind: Mesh}, rules: [{default: {idleTimeout: 1h}}]}"


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_apply_sends_one_batch_of_every_nonempty_document(cli: Invoke, fake: FakeControlPlane,
                                                          tmp_path: Path) -> None:
    result = cli("apply", "-f", str(_write(tmp_path, "p.yaml", POLICIES)))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["meshtimeout/slow-backend created",
                                          "meshtimeout/fast-frontend created"]
    (batch,) = [json.loads(r.content) for r in fake.requests if r.method == "POST"]
    assert batch["dryRun"] is False
    assert [d["name"] for d in batch["documents"]] == ["slow-backend", "fast-frontend"]
    assert ("MeshTimeout", "default", "fast-frontend") in fake.store

    again = cli("apply", "-f", str(tmp_path / "p.yaml"))
    assert again.stdout.splitlines() == ["meshtimeout/slow-backend unchanged",
                                         "meshtimeout/fast-frontend unchanged"]


def test_apply_reports_every_local_problem_and_sends_nothing(cli: Invoke, fake: FakeControlPlane,
                                                             tmp_path: Path) -> None:
    path = _write(tmp_path, "bad.yaml", INVALID)
    broken = _write(tmp_path, "broken.yaml", "type: Mesh\nname: [unclosed\n")
    result = cli("apply", "-f", str(path), "-f", str(broken))
    assert result.exit_code == 1
    err = result.stderr
    assert f'{path}#doc2: spec.to[0].default.http.requestTimeout: expected a duration like "5s"' \
        in err
    assert f"{path}#doc3: name: expected lower-case letters" in err
    assert f"{path}#doc4: type: unknown type 'NoSuchKind'" in err
    assert f"{broken}: invalid YAML: line 3, column 1" in err
    assert "#doc1" not in err
    assert err.startswith("error: nothing was applied: 4 problem(s) in 4 document(s) or file(s)")
    assert fake.requests == []
    _no_traceback(result)


def test_apply_directory_takes_yaml_and_json_sorted(cli: Invoke, fake: FakeControlPlane,
                                                    tmp_path: Path) -> None:
    d = tmp_path / "manifests"
    d.mkdir()
    (d / "b.yaml").write_text("type: Zone\nname: zone-b\n")
    (d / "a.json").write_text(json.dumps({"type": "Zone", "name": "zone-a"}))
    (d / "notes.txt").write_text("not a manifest")
    result = cli("apply", "-f", str(d))
    assert result.exit_code == 0, result.output
    (batch,) = [json.loads(r.content) for r in fake.requests if r.method == "POST"]
    assert [doc["name"] for doc in batch["documents"]] == ["zone-a", "zone-b"]


def test_apply_stdin_with_default_mesh_and_dry_run(cli: Invoke, fake: FakeControlPlane) -> None:
    stdin = ("type: Mesh\nname: payments\n---\n"
             "type: MeshTimeout\nname: t1\n" + SPEC + "\n")
    result = cli("apply", "-f", "-", "-m", "payments", "--dry-run", input=stdin)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["mesh/payments valid (dry run)",
                                          "meshtimeout/t1 valid (dry run)"]
    (batch,) = [json.loads(r.content) for r in fake.requests if r.method == "POST"]
    assert batch["dryRun"] is True
    assert "mesh" not in batch["documents"][0]  # a Mesh is global: -m does not apply
    assert batch["documents"][1]["mesh"] == "payments"
    assert ("Mesh", "", "payments") not in fake.store


def test_server_refusal_is_located_by_file_and_document(cli: Invoke, fake: FakeControlPlane,
                                                        tmp_path: Path) -> None:
    path = _write(tmp_path, "p.yaml", "type: Zone\nname: z\n---\n"
                  "type: MeshTimeout\nname: t\nmesh: nowhere\n" + SPEC + "\n")
    result = cli("apply", "-f", str(path))
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0].startswith("error: the control plane refused the batch")
    assert lines[1:] == [f"  {path}#doc2: mesh: mesh 'nowhere' does not exist"]
    assert fake.store.get(("Zone", "", "z")) is None


def test_apply_bounds_its_input(cli: Invoke, fake: FakeControlPlane, tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (16 * 1024 * 1024 + 1))
    result = cli("apply", "-f", str(big))
    assert result.exit_code == 1
    assert f"{big}: larger than 16 MiB" in result.stderr

    many = {"items": [{"type": "Zone", "name": f"z{i}"} for i in range(10_001)]}
    result = cli("apply", "-f", str(_write(tmp_path, "many.json", json.dumps(many))))
    assert result.exit_code == 1
    assert "more than 10000 documents" in result.stderr
    assert fake.requests == []


def test_apply_of_nothing_is_an_error(cli: Invoke, fake: FakeControlPlane) -> None:
    result = cli("apply", "-f", "-", input="---\n# nothing\n")
    assert result.exit_code == 1
    assert "nothing to apply" in result.stderr
    assert fake.requests == []

