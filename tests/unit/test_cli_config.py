"""The ``gossamer`` CLI's configuration and errors: contexts in a private config file, what
to run without one, wrong tokens, refused connections (the one test with a real socket),
problem JSON mapped to errors, ages, ``global run``'s address check and ``version``.
"""

from __future__ import annotations

import re
import socket
import stat
from pathlib import Path

import httpx
import pytest
import yaml
from click.testing import CliRunner

from cli.client import ServerError, error_from_response
from cli.main import main
from cli.output import format_age
from cli.state import Runtime
from gossamer.errors import InvalidResource, NotFound
from tests.unit.cli_fake_cp import (
    NOW,
    FakeControlPlane,
    Invoke,
    _no_traceback,
    _problem,
    as_response,
)


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


def test_problem_json_maps_to_errors_with_field_errors() -> None:
    resp = httpx.Response(400, json={
        "status": 400, "title": "invalid resource",
        "detail": 'invalid MeshTimeout slow: spec.x: expected a duration like "5s"',
        "fieldErrors": [{"field": "spec.x", "message": 'expected a duration like "5s"'}]})
    err = error_from_response(as_response(resp))
    assert isinstance(err, InvalidResource)
    assert [str(e) for e in err.field_errors] == ['spec.x: expected a duration like "5s"']
    assert err.detail == resp.json()["detail"]
    assert isinstance(error_from_response(as_response(_problem(404, "not found", "gone"))),
                      NotFound)
    html = error_from_response(as_response(httpx.Response(502, text="<html>bad gateway</html>")))
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



@pytest.mark.parametrize(("text", "problem"), [
    ("controlPlanes: [{name: a, address: ftp://x}]",
     "controlPlanes.0.address: expected an http:// or https:// URL"),
    ("controlPlanes: [{name: a, address: http://x, tokenFiel: /t}]",
     "controlPlanes.0.tokenFiel: unknown field"),
    ("controlPlanes: [{name: 'bad name', address: http://x}]", "controlPlanes.0.name: "),
    ("controlPlanes: [{address: http://x}]", "controlPlanes.0.name: missing"),
    ("controlPlanes: [{name: a, address: http://x}, {name: b, address: 5}]",
     "controlPlanes.1.address: expected a string"),
    ("controlPlanes: {name: a}", "controlPlanes: expected a list"),
    ("currentContext: [a]", "currentContext: expected a string"),
    ("- just\n- a list", "(document): expected a mapping"),
    ("kind: Config", "kind: unknown field"),
])
def test_a_malformed_config_file_names_the_field(cli: Invoke, tmp_path: Path, text: str,
                                                 problem: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    result = cli("get", "meshes", environ={"GOSSAMER_CONFIG": str(path)})
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: the config file {path} is malformed: {problem}")
    _no_traceback(result)
    assert path.read_text() == text  # reading never rewrites it


def test_a_bad_address_in_the_environment_is_named(cli: Invoke, tmp_path: Path) -> None:
    result = cli("get", "meshes", environ={"GOSSAMER_ADDRESS": "cp.test:5681"})
    assert result.exit_code == 1
    assert result.stderr.startswith("error: GOSSAMER_ADDRESS='cp.test:5681': expected an http")
    _no_traceback(result)


def test_add_refuses_a_bad_name_with_the_field(cli: Invoke, tmp_path: Path) -> None:
    result = cli("config", "control-planes", "add", "--name", "-x", "--address", "http://a",
                 environ={"GOSSAMER_CONFIG": str(tmp_path / "c.yaml")})
    assert result.exit_code == 2
    assert "name: letters, digits" in result.stderr
    assert not (tmp_path / "c.yaml").exists()
