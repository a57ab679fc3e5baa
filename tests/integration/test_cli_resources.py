"""The ``gossamer`` CLI against a real global over real HTTP: resources.

``apply -f`` of every kind then ``get`` each back, invalid files and refused batches that
store nothing, ``--dry-run``, ``delete``, a wrong token file, and ``get`` following pages
(through click's ``CliRunner`` with a transport that counts requests).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import SplitResult, parse_qs, urlsplit

import yaml

from cli.http_wire import HttpRequest, HttpResponse, StdlibTransport
from gossamer.model.registry import REGISTRY, parse_document
from tests.integration.cli_env import MESH, Session, _ok, _one_line_error
from tests.integration.cli_every_kind import EVERY_KIND


def _docs() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(EVERY_KIND) if d]


def _get_args(doc: dict[str, Any]) -> list[str]:
    desc = REGISTRY.get(doc["type"])
    return ["get", desc.noun, doc["name"], *(["-m", doc["mesh"]] if desc.mesh_scoped else [])]


def test_the_fixture_covers_every_kind() -> None:
    # System kinds (the CA's state) are written by the control planes only.
    assert sorted({d["type"] for d in _docs()}) == sorted(d.name for d in REGISTRY
                                                        if not d.system)


def test_apply_every_kind_then_get_each_back_and_apply_that_unchanged(cp: Session) -> None:
    source = cp.write("every-kind.yaml", EVERY_KIND)
    out = _ok(cp.run("apply", "-f", str(source)))
    expected = [f"{REGISTRY.get(d['type']).noun}/{d['name']} created" for d in _docs()]
    assert out.splitlines() == expected

    fetched = []
    for doc in _docs():
        got = yaml.safe_load(_ok(cp.cli(*_get_args(doc), "-o", "yaml")))
        want, have = parse_document(doc), parse_document(got)
        assert have.spec == want.spec, doc["type"]
        assert (have.name, have.mesh, dict(have.labels)) == (want.name, want.mesh,
                                                             dict(want.labels))
        assert got["version"] == 1
        fetched.append(got)

    # What `get -o yaml` prints applies back as it is, and changes nothing.
    echo = cp.write("echo.yaml", yaml.safe_dump_all(fetched, sort_keys=False))
    out = _ok(cp.run("apply", "-f", str(echo)))
    assert out.splitlines() == [line.replace("created", "unchanged") for line in expected]

    # So does a list printed as one stream, piped to `apply -f -`.
    stream = _ok(cp.run("get", "meshtimeouts", "-m", MESH, "-o", "yaml"))
    assert _ok(cp.run("apply", "-f", "-", input=stream)) == (
        "meshtimeout/backend-timeouts unchanged\n")


def test_an_invalid_file_reports_every_field_and_stores_nothing(cp: Session) -> None:
    source = cp.write("invalid.yaml", """\
type: MeshTimeout
name: would-be-fine
spec:
  targetRef: {kind: Mesh}
  to: [{targetRef: {kind: Mesh}, default: {idleTimeout: 1h}}]
---
type: MeshTimeout
name: bad-duration
spec:
  targetRef: {kind: Mesh}
  to: [{targetRef: {kind: Mesh}, default: {http: {requestTimeout: soon}}}]
---
type: MeshRetry
name: Bad_Name
spec:
  targetRef: {kind: Mesh}
  to: [{targetRef: {kind: Mesh}, default: {http: {numRetries: -1}}}]
""")
    result = cp.run("apply", "-f", str(source))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"{source}#doc2: spec.to[0].default.http.requestTimeout: expected a duration" in (
        result.stderr)
    assert f"{source}#doc3: name: expected lower-case letters" in result.stderr
    assert f"{source}#doc3: spec.to[0].default.http.numRetries" in result.stderr
    assert result.stdout == ""
    _one_line_error(cp.cli("get", "meshtimeout", "would-be-fine"), 1)


def test_a_batch_the_server_refuses_stores_nothing(cp: Session) -> None:
    # Valid document by document, so it reaches the server, which finds the missing mesh.
    source = cp.write("missing-mesh.yaml", """\
type: MeshTimeout
name: first-of-batch
spec:
  targetRef: {kind: Mesh}
  to: [{targetRef: {kind: Mesh}, default: {idleTimeout: 1h}}]
---
type: MeshTimeout
name: second-of-batch
mesh: no-such-mesh
spec:
  targetRef: {kind: Mesh}
  to: [{targetRef: {kind: Mesh}, default: {idleTimeout: 1h}}]
""")
    result = cp.cli("apply", "-f", str(source))
    assert result.exit_code == 1, result.output
    assert "nothing was applied" in result.stderr
    assert f"{source}#doc2: mesh" in result.stderr, result.stderr
    _one_line_error(cp.cli("get", "meshtimeout", "first-of-batch"), 1)


def test_dry_run_stores_nothing(cp: Session) -> None:
    source = cp.write("dry.yaml", """\
type: MeshTimeout
name: only-validated
spec:
  targetRef: {kind: Mesh}
  to: [{targetRef: {kind: Mesh}, default: {idleTimeout: 1h}}]
""")
    assert _ok(cp.run("apply", "--dry-run", "-f", str(source))) == (
        "meshtimeout/only-validated valid (dry run)\n")
    line = _one_line_error(cp.run("get", "meshtimeout", "only-validated"), 1)
    assert "not found" in line


def test_a_wrong_token_file_is_one_line_and_exit_1(cp: Session) -> None:
    wrong = cp.write("wrong-token", "not-the-admin-token\n")
    _ok(cp.run("config", "control-planes", "add", "--name", "wrong", "--address", cp.proc.api,
               "--token-file", str(wrong)))
    line = _one_line_error(cp.run("--context", "wrong", "get", "meshes"), 1)
    assert "admin token" in line
    line = _one_line_error(cp.run("--context", "wrong", "token", "zone", "--zone", "east"), 1)
    assert "admin token" in line


def test_delete(cp: Session) -> None:
    source = cp.write("doomed.yaml", """\
type: MeshTimeout
name: doomed
spec:
  targetRef: {kind: Mesh}
  to: [{targetRef: {kind: Mesh}, default: {idleTimeout: 1h}}]
""")
    _ok(cp.cli("apply", "-f", str(source)))
    assert _ok(cp.run("delete", "mt", "doomed")) == "meshtimeout/doomed deleted\n"
    assert "not found" in _one_line_error(cp.cli("get", "meshtimeout", "doomed"), 1)
    assert "not found" in _one_line_error(cp.cli("delete", "meshtimeout", "doomed"), 1)


class CountingTransport(StdlibTransport):
    """The real network, remembering each request's URL."""

    def __init__(self) -> None:
        super().__init__(None)
        self.seen: list[SplitResult] = []

    def send(self, request: HttpRequest) -> HttpResponse:
        self.seen.append(urlsplit(request.url))
        return super().send(request)


def test_get_follows_pages_across_more_than_500_items(cp: Session) -> None:
    count = 523
    docs = [{"type": "Mesh", "name": "paging"}] + [
        {"type": "MeshTimeout", "name": f"t-{i:04d}", "mesh": "paging",
         "spec": {"targetRef": {"kind": "Mesh"},
                  "to": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": f"{i}s"}}]}}
        for i in range(count)]
    source = cp.write("many.yaml", yaml.safe_dump_all(docs))
    assert _ok(cp.cli("apply", "-f", str(source))).count(" created\n") == count + 1

    transport = CountingTransport()
    listed = json.loads(_ok(cp.cli("get", "meshtimeouts", "-m", "paging", "-o", "json",
                                   transport=transport)))
    names = [item["name"] for item in listed["items"]]
    assert sorted(names) == [f"t-{i:04d}" for i in range(count)]
    pages = [u for u in transport.seen if u.path == "/meshes/paging/meshtimeouts"]
    assert len(pages) >= 2 and "offset" in parse_qs(pages[-1].query)

    table = _ok(cp.run("get", "meshtimeouts", "-m", "paging")).splitlines()
    assert table[0].split() == ["NAME", "MESH", "TARGETREF", "AGE"]
    assert len(table) == count + 1

