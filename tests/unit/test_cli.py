"""The ``gossamer`` CLI against a tiny in-memory fake of docs/api.md.

``FakeControlPlane`` implements only what the contract says for the routes the CLI uses
(``/_apply``, list with paging, get, delete, the problem JSON, bearer auth) and is plugged
in through ``httpx.MockTransport``: no sockets, except for the one test that needs a real
refused connection. Integration tests against the real global CP live elsewhere.
"""

from __future__ import annotations

import json
import re
import socket
import stat
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from click.testing import CliRunner, Result

from cli.client import ServerError, error_from_response
from cli.main import main
from cli.output import format_age
from cli.state import Runtime
from gossamer.errors import InvalidResource, NotFound
from gossamer.model.registry import REGISTRY, parse_document, to_document

TOKEN = "s3cret-admin-token"
NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
CREATED = "2024-05-01T09:00:00+00:00"  # three hours before NOW


def _problem(status: int, title: str, detail: str,
             field_errors: list[dict[str, str]] | None = None) -> httpx.Response:
    return httpx.Response(status, json={"status": status, "title": title, "detail": detail,
                                        "fieldErrors": field_errors or []})


class FakeControlPlane:
    """Resources in a dict, pages of at most ``page_size``; records each request seen."""

    def __init__(self, token: str = TOKEN, page_size: int = 1000) -> None:
        self.token = token
        self.page_size = page_size
        self.store: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.requests: list[httpx.Request] = []
        self.put({"type": "Mesh", "name": "default"})

    def put(self, doc: dict[str, Any]) -> str:
        res = parse_document(doc)
        stored = to_document(res, with_meta=False)
        old = self.store.get(res.key)
        if old is not None and {k: v for k, v in old.items() if k not in (
                "version", "creationTime")} == stored:
            return "unchanged"
        stored["version"] = (old or {}).get("version", 0) + 1
        stored["creationTime"] = CREATED
        self.store[res.key] = stored
        return "updated" if old else "created"

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return _problem(401, "unauthorized", "a valid admin bearer token is required")
        parts = [p for p in request.url.path.split("/") if p]
        if parts == ["_apply"] and request.method == "POST":
            return self._apply(json.loads(request.content))
        mesh = None
        if parts[:1] == ["meshes"] and len(parts) >= 3:
            mesh, parts = parts[1], parts[2:]
        desc = REGISTRY.by_path(parts[0])
        if desc is None:
            return _problem(404, "not found", f"no route {request.url.path}")
        if len(parts) == 1 and request.method == "GET":
            return self._list(desc.name, mesh, request.url.params)
        key = (desc.name, mesh or "", parts[1])
        if key not in self.store:
            return _problem(404, "not found", f"{desc.name} {parts[1]} not found")
        if request.method == "DELETE":
            del self.store[key]
            return httpx.Response(200, json={})
        return httpx.Response(200, json=self.store[key])

    def _list(self, kind: str, mesh: str | None, params: httpx.QueryParams) -> httpx.Response:
        wanted = dict(p.split("=") for p in params["labels"].split(",")) if "labels" in params \
            else {}
        items = [d for (t, m, _), d in sorted(self.store.items())
                 if t == kind and mesh in (None, m)
                 and all(d.get("labels", {}).get(k) == v for k, v in wanted.items())]
        size = min(int(params.get("size", 100)), self.page_size)
        start = int(params.get("offset", 0))
        nxt = str(start + size) if start + size < len(items) else None
        return httpx.Response(200, json={"items": items[start:start + size],
                                         "total": len(items), "next": nxt})

    def _apply(self, body: dict[str, Any]) -> httpx.Response:
        errors = []
        meshes = {name for (t, _, name) in self.store if t == "Mesh"}
        meshes |= {d["name"] for d in body["documents"] if d.get("type") == "Mesh"}
        for i, doc in enumerate(body["documents"]):
            res = parse_document(doc)  # the CLI validated already; the fake trusts nothing
            if res.mesh and res.mesh not in meshes:
                errors.append({"field": f"documents[{i}].mesh",
                               "message": f"mesh {res.mesh!r} does not exist"})
        if errors:
            joined = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
            return _problem(400, "invalid resource", f"invalid batch: {joined}", errors)
        results = []
        for doc in body["documents"]:
            res = parse_document(doc)
            action = "valid" if body["dryRun"] else self.put(doc)
            results.append({"type": res.type, "name": res.name, "mesh": res.mesh,
                            "action": action})
        return httpx.Response(200, json={"results": results})

    def paths(self, method: str) -> list[str]:
        return [str(r.url.path) for r in self.requests if r.method == method]


@pytest.fixture
def fake() -> FakeControlPlane:
    return FakeControlPlane()


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "admin-token"
    path.write_text(TOKEN + "\n")
    return path


@pytest.fixture
def env(tmp_path: Path, token_file: Path) -> dict[str, str]:
    return {"GOSSAMER_CONFIG": str(tmp_path / "cfg" / "config.yaml"),
            "GOSSAMER_ADDRESS": "http://cp.test:5681",
            "GOSSAMER_TOKEN_FILE": str(token_file)}


Invoke = Callable[..., Result]


@pytest.fixture
def cli(fake: FakeControlPlane, env: dict[str, str]) -> Invoke:
    def invoke(*args: str, input: str | bytes | None = None,
               environ: dict[str, str] | None = None) -> Result:
        runtime = Runtime(transport=httpx.MockTransport(fake), clock=lambda: NOW,
                          env=env if environ is None else environ)
        return CliRunner().invoke(main, list(args), obj=runtime, input=input)
    return invoke


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


def _no_traceback(result: Result) -> None:
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


# --- apply -------------------------------------------------------------------------------


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


# --- get / delete ------------------------------------------------------------------------


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


# --- contexts ----------------------------------------------------------------------------


def test_config_file_is_private_and_contexts_switch(cli: Invoke, fake: FakeControlPlane,
                                                    tmp_path: Path, token_file: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    cfg_path = tmp_path / "cfg" / "config.yaml"
    environ = {"GOSSAMER_CONFIG": str(cfg_path)}
    monkeypatch.chdir(token_file.parent)  # a relative --token-file is stored absolute
    first = cli("config", "control-planes", "add", "--name", "local",
                "--address", "http://cp.test:5681/", "--token-file", "admin-token",
                environ=environ)
    assert first.exit_code == 0, first.output
    assert "switched to control plane 'local'" in first.stdout
    assert stat.S_IMODE(cfg_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cfg_path.parent.stat().st_mode) == 0o700

    second = cli("config", "control-planes", "add", "--name", "other",
                 "--address", "https://elsewhere.test:5681", "--token", "inline-token",
                 environ=environ)
    assert second.exit_code == 0, second.output
    assert "switched" not in second.stdout
    saved = yaml.safe_load(cfg_path.read_text())
    assert saved == {"currentContext": "local", "controlPlanes": [
        {"name": "local", "address": "http://cp.test:5681", "tokenFile": str(token_file)},
        {"name": "other", "address": "https://elsewhere.test:5681", "token": "inline-token"}]}
    assert stat.S_IMODE(cfg_path.stat().st_mode) == 0o600
    assert "REDACTED" in cli("config", "view", environ=environ).stdout

    assert cli("get", "meshes", environ=environ).exit_code == 0
    token_file.write_text("rotated\n")  # the token is read at each command
    fake.token = "rotated"
    assert cli("get", "meshes", environ=environ).exit_code == 0
    assert [r.url.host for r in fake.requests] == ["cp.test", "cp.test"]

    assert cli("config", "control-planes", "use", "other", environ=environ).exit_code == 0
    listed = cli("config", "control-planes", "list", environ=environ).stdout.splitlines()
    assert [line.split()[0] for line in listed[1:]] == ["local", "*"]
    fake.token = "inline-token"
    assert cli("get", "meshes", environ=environ).exit_code == 0
    assert cli("--context", "local", "get", "meshes", environ=environ).exit_code == 1
    assert [r.url.host for r in fake.requests][-2:] == ["elsewhere.test", "cp.test"]

    dup = cli("config", "control-planes", "add", "--name", "other",
              "--address", "http://x.test", environ=environ)
    assert dup.exit_code == 1
    assert "--overwrite" in dup.stderr
    assert cli("config", "control-planes", "remove", "other", environ=environ).exit_code == 0
    saved = yaml.safe_load(cfg_path.read_text())
    assert "currentContext" not in saved  # the current one was removed
    assert [cp["name"] for cp in saved["controlPlanes"]] == ["local"]


def test_without_a_context_the_user_is_told_what_to_run(cli: Invoke, tmp_path: Path) -> None:
    result = cli("get", "meshes", environ={"GOSSAMER_CONFIG": str(tmp_path / "none.yaml")})
    assert result.exit_code == 1
    assert "gossamer config control-planes add" in result.stderr
    _no_traceback(result)


def test_wrong_token_is_one_line_with_a_hint(cli: Invoke, fake: FakeControlPlane) -> None:
    fake.token = "something-else"
    result = cli("get", "meshes")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: a valid admin bearer token is required")
    assert len(result.stderr.splitlines()) == 1


def test_connection_refused_is_a_clear_line(tmp_path: Path, token_file: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    runtime = Runtime(env={"GOSSAMER_CONFIG": str(tmp_path / "c.yaml"),
                           "GOSSAMER_ADDRESS": f"http://127.0.0.1:{port}",
                           "GOSSAMER_TOKEN_FILE": str(token_file)})
    result = CliRunner().invoke(main, ["get", "meshes"], obj=runtime)
    assert result.exit_code == 1
    assert re.match(rf"error: cannot reach the control plane at http://127.0.0.1:{port}: ",
                    result.stderr)
    _no_traceback(result)


# --- pieces ------------------------------------------------------------------------------


def test_problem_json_maps_to_errors_with_field_errors() -> None:
    resp = httpx.Response(400, json={
        "status": 400, "title": "invalid resource",
        "detail": 'invalid MeshTimeout slow: spec.x: expected a duration like "5s"',
        "fieldErrors": [{"field": "spec.x", "message": 'expected a duration like "5s"'}]})
    err = error_from_response(resp)
    assert isinstance(err, InvalidResource)
    assert [str(e) for e in err.field_errors] == ['spec.x: expected a duration like "5s"']
    assert err.detail == resp.json()["detail"]
    assert isinstance(error_from_response(_problem(404, "not found", "gone")), NotFound)
    html = error_from_response(httpx.Response(502, text="<html>bad gateway</html>"))
    assert isinstance(html, ServerError)
    assert html.detail == "HTTP 502 Bad Gateway: <html>bad gateway</html>"


@pytest.mark.parametrize(("created", "age"), [
    ("2024-05-01T11:59:30+00:00", "30s"), ("2024-05-01T11:30:00Z", "30m"),
    ("2024-04-30T12:00:00", "24h"), ("2024-04-01T12:00:00+00:00", "30d"),
    ("2021-05-01T12:00:00+00:00", "3y"), (None, "-"), ("yesterday", "-")])
def test_age(created: str | None, age: str) -> None:
    assert format_age(created, NOW) == age


def test_global_run_refuses_a_bad_address_before_starting() -> None:
    result = CliRunner().invoke(main, ["global", "run", "--api-addr", "nowhere"])
    assert result.exit_code == 2
    assert "expected HOST:PORT" in result.stderr


def test_version(cli: Invoke) -> None:
    from gossamer import __version__

    assert cli("version").stdout == f"gossamer {__version__}\n"
    assert __version__ in cli("--version").stdout
