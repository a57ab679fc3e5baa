"""``gossamer global run`` and ``gossamer zone run`` as processes: a restarted global keeps
its resources and admin token, a taken port is one error line, a standalone zone serves its
API (and inspects and rotates its meshes' roots), a zone joins with a CLI-made token and is
cut off when it is revoked, and ``zone run``'s flags are checked before it starts.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from click.testing import CliRunner, Result

from cli.main import main
from cli.state import Runtime
from tests.integration.cli_env import (
    CLI_TIMEOUT,
    GOSSAMER,
    READY_DEADLINE,
    Proc,
    Session,
    _clean_env,
    _free_port,
    _jwt_claims,
    _ok,
    _one_line_error,
    global_proc,
)
from tests.waiting import eventually_sync


def test_global_restarted_on_its_data_dir_keeps_resources_and_admin_token(
        tmp_path: Path) -> None:
    env = _clean_env(tmp_path / "config.yaml")
    proc = global_proc(tmp_path / "global", _free_port(), env)
    s = Session(proc, tmp_path, env)
    try:
        proc.start()
        _ok(s.run("config", "control-planes", "add", "--name", "restart", "--address", proc.api,
                  "--token-file", str(s.token_file)))
        admin_token = s.token_file.read_text()
        source = s.write("keep.yaml", """\
type: MeshTimeout
name: survives
spec:
  targetRef: {kind: Mesh}
  to: [{targetRef: {kind: Mesh}, default: {idleTimeout: 1h}}]
""")
        _ok(s.run("apply", "-f", str(source)))
        assert proc.stop() == 0  # SIGTERM is a clean stop

        proc.start()
        assert s.token_file.read_text() == admin_token
        got = yaml.safe_load(_ok(s.run("get", "meshtimeout", "survives", "-o", "yaml")))
        assert got["spec"]["to"][0]["default"]["idleTimeout"] == "1h"
        assert _ok(s.run("apply", "-f", str(source))) == "meshtimeout/survives unchanged\n"
    finally:
        proc.stop()
        print(f"--- log ---\n{proc.log()}")


def test_a_second_global_on_a_taken_port_is_one_line_and_exit_1(cp: Session,
                                                                tmp_path: Path) -> None:
    port = int(cp.proc.api.rsplit(":", 1)[1])
    result = subprocess.run(
        [str(GOSSAMER), "global", "run", "--data-dir", str(tmp_path / "other"),
         "--api-addr", f"127.0.0.1:{port}", "--sync-addr", f"127.0.0.1:{_free_port()}"],
        capture_output=True, text=True, env=cp.env, timeout=READY_DEADLINE, check=False)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and f"127.0.0.1:{port}" in errors[0], result.stderr


@contextlib.contextmanager
def standalone_zone(tmp_path: Path) -> Iterator[tuple[Proc, dict[str, str]]]:
    """`gossamer zone run --zone lab` as a process, and the CLI environment that manages it
    (its address and its own admin token); its log is printed when it stops."""
    env = _clean_env(tmp_path / "config.yaml")
    port = _free_port()
    data_dir = tmp_path / "zone-lab"
    proc = Proc(["zone", "run", "--zone", "lab", "--data-dir", str(data_dir),
                 "--api-addr", f"127.0.0.1:{port}", "--xds-addr", f"127.0.0.1:{_free_port()}"],
                tmp_path / "zone.log", f"http://127.0.0.1:{port}", env)
    try:
        proc.start()
        yield proc, {**env, "GOSSAMER_ADDRESS": proc.api,
                     "GOSSAMER_TOKEN_FILE": str(data_dir / "admin-token")}
    finally:
        proc.stop()
        print(f"--- log ---\n{proc.log()}")


def test_standalone_zone_serves_its_api(tmp_path: Path) -> None:
    with standalone_zone(tmp_path) as (proc, zone_env):
        info = httpx.get(f"{proc.api}/", timeout=5).json()
        assert (info["mode"], info["zone"]) == ("standalone", "lab")
        # The CLI manages it like a global, with its own admin token.
        result = subprocess.run([str(GOSSAMER), "get", "meshes"], capture_output=True,
                                text=True, env=zone_env, timeout=CLI_TIMEOUT, check=False)
        assert _ok(result).splitlines()[1].split()[:2] == ["default", "ca-1"]
        # A standalone zone admits its own sidecars, but zone tokens come from a global.
        result = subprocess.run([str(GOSSAMER), "token", "dataplane", "--service", "web"],
                                capture_output=True, text=True, env=zone_env,
                                timeout=CLI_TIMEOUT, check=False)
        assert _jwt_claims(_ok(result).strip())[1]["kind"] == "dataplane"
        zone_cli = CliRunner().invoke(main, ["token", "zone", "--zone", "east"],
                                      obj=Runtime(env=zone_env))
        line = _one_line_error(zone_cli, 1)
        assert "is a standalone zone: zone tokens are issued by the global" in line


def test_zone_joins_with_a_token_from_the_cli_and_revoking_it_cuts_the_zone_off(
        cp: Session, tmp_path: Path) -> None:
    token_file = tmp_path / "west.token"
    # As an operator would: the token alone on stdout, straight into a file.
    issued = subprocess.run(f"'{GOSSAMER}' token zone --zone west > '{token_file}'", shell=True,
                            capture_output=True, text=True, env=cp.env, timeout=CLI_TIMEOUT,
                            check=False)
    assert issued.returncode == 0, issued.stderr
    token_id = _jwt_claims(token_file.read_text().strip())[1]["jti"]

    port = _free_port()
    sync_port = cp.proc.args[cp.proc.args.index("--sync-addr") + 1].rsplit(":", 1)[1]
    zone = Proc(["zone", "run", "--zone", "west", "--data-dir", str(tmp_path / "zone-west"),
                 "--api-addr", f"127.0.0.1:{port}", "--xds-addr", f"127.0.0.1:{_free_port()}",
                 "--global", f"grpcs://127.0.0.1:{sync_port}", "--token-file", str(token_file),
                 "--global-ca", str(cp.tmp / "global" / "tls" / "ca.pem"),
                 "--heartbeat-interval", "1s", "--heartbeat-timeout", "3s"],
                tmp_path / "zone.log", f"http://127.0.0.1:{port}", cp.env)
    headers = {"Authorization": f"Bearer {cp.token_file.read_text().strip()}"}

    def insight() -> dict[str, Any]:
        r = httpx.get(f"{cp.proc.api}/zones/west/_overview", headers=headers, timeout=5)
        return dict(r.json()["insight"]) if r.status_code == 200 else {}

    try:
        zone.start()
        assert httpx.get(f"{zone.api}/", timeout=5).json()["mode"] == "zone"
        eventually_sync(lambda: insight().get("status") == "Online", READY_DEADLINE,
                        "the zone to be online at the global", interval=0.1)
        assert "west" in _ok(cp.cli("get", "zones")).split()

        _ok(cp.run("token", "revoke", token_id))
        eventually_sync(lambda: insight().get("status") == "Offline", READY_DEADLINE,
                        "the zone to be cut off", interval=0.1)
    finally:
        zone.stop()
        print(f"--- zone log ---\n{zone.log()}")


def _zone_run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(GOSSAMER), "zone", "run", *args], capture_output=True, text=True,
                          env=env, timeout=CLI_TIMEOUT, check=False)


def test_federated_zone_without_a_way_to_trust_the_global_exits_2(tmp_path: Path) -> None:
    env = _clean_env(tmp_path / "config.yaml")
    result = _zone_run("--zone", "x", "--global", "grpcs://127.0.0.1:1", env=env)
    line = _one_line_error(result, 2)
    assert "--global-ca" in line and "--insecure-skip-verify" in line and "--token-file" in line

    token = tmp_path / "x.token"
    token.write_text("aaa.bbb.ccc\n")
    result = _zone_run("--zone", "x", "--global", "grpcs://127.0.0.1:1", "--token-file",
                       str(token), env=env)
    line = _one_line_error(result, 2)
    assert "--global-ca" in line and "--token-file" not in line
    assert not (tmp_path / ".gossamer").exists()


ZONE_USAGE_ERRORS: Sequence[tuple[list[str], dict[str, str], str]] = [
    (["--global", "grpc://global:5685", "--insecure-skip-verify"], {},
     "plaintext grpc:// is not supported"),
    (["--global", "global:5685"], {}, "expected grpcs://HOST:PORT"),
    (["--global", "grpcs://global"], {}, "expected grpcs://HOST:PORT"),
    (["--global", "grpcs://global:5685/sync"], {}, "expected grpcs://HOST:PORT"),
    (["--global", "grpcs://global:5685", "--insecure-skip-verify", "--token-file", "TMP/none"],
     {}, "cannot read"),
    (["--global", "grpcs://global:5685", "--insecure-skip-verify", "--token-file",
      "TMP/empty"], {}, "is empty"),
    (["--global", "grpcs://global:5685", "--insecure-skip-verify", "--token-file",
      "TMP/admin"], {}, "does not hold a token"),
    (["--global", "grpcs://global:5685", "--global-ca", "TMP/jwt", "--token-file", "TMP/jwt"],
     {}, "not a readable PEM CA bundle"),
    (["--global", "grpcs://global:5685", "--global-ca", "TMP/none", "--token-file", "TMP/jwt"],
     {}, "does not exist"),
    (["--token-file", "TMP/jwt"], {}, "--token-file only apply with --global"),
    ([], {"GOSSAMER_INSECURE_SKIP_VERIFY": "1"}, "--insecure-skip-verify only apply"),
    (["--heartbeat-interval", "10s", "--heartbeat-timeout", "5s"], {},
     "--heartbeat-timeout must be longer"),
    (["--heartbeat-interval", "0s"], {}, "shorter than 100ms"),
    (["--agent-grace", "0s"], {}, "shorter than 1s"),
    ([], {"GOSSAMER_AGENT_GRACE": "soon"}, 'expected a duration like "5s"'),
    (["--api-addr", "localhost"], {}, "expected HOST:PORT"),
    (["--store", "mysql://x"], {}, "expected sqlite, memory"),
    ([], {"GOSSAMER_GLOBAL_ADDRESS": "grpc://global:5685"}, "plaintext"),
]


@pytest.mark.parametrize(("args", "env", "message"), ZONE_USAGE_ERRORS)
def test_zone_run_flags_are_checked_before_it_starts(tmp_path: Path, args: list[str],
                                                     env: dict[str, str], message: str) -> None:
    (tmp_path / "empty").write_text("")
    (tmp_path / "admin").write_text("an-admin-token-not-a-jwt\n")
    (tmp_path / "jwt").write_text("aaa.bbb.ccc\n")
    args = [a.replace("TMP", str(tmp_path)) for a in args]
    runtime = Runtime(env={"GOSSAMER_CONFIG": str(tmp_path / "none.yaml")})
    result = CliRunner(env=env).invoke(main, ["zone", "run", "--zone", "x",
                                              "--data-dir", str(tmp_path / "d"), *args],
                                       obj=runtime)
    assert message in _one_line_error(result, 2)
    assert not (tmp_path / "d").exists()


def test_inspect_meshes_and_rotate_a_builtin_root(tmp_path: Path) -> None:
    """Against a standalone zone, which owns its roots (no other zone to wait for)."""
    with standalone_zone(tmp_path) as (_, zone_env):
        runtime = Runtime(env=zone_env)

        def cli(*args: str) -> Result:
            return CliRunner().invoke(main, list(args), obj=runtime)

        def overview() -> dict[str, Any]:
            items = json.loads(_ok(cli("inspect", "meshes", "-o", "json")))["items"]
            found: dict[str, Any] = next(i for i in items if i["name"] == "default")
            return found

        before = eventually_sync(lambda: overview()["trust"], 30, "the mesh's trust",
                                 interval=0.2)
        assert before["phase"] == "stable" and before["signer"]["backend"] == "ca-1"
        table = _ok(cli("inspect", "meshes"))
        assert table.splitlines()[0].split()[:4] == ["NAME", "ENABLED-BACKEND", "PHASE",
                                                     "SIGNER"]
        row = next(line for line in table.splitlines() if line.startswith("default"))
        assert row.split()[1:5] == ["ca-1", "(builtin)", "stable", "ca-1/0"]

        out = _ok(cli("mesh", "rotate-ca", "default"))
        assert "generation 1" in out
        # No sidecar is connected: nothing to wait for, the new root takes over at once.

        def rotated() -> dict[str, Any] | None:
            trust: dict[str, Any] = overview()["trust"]
            done = trust["signer"]["generation"] == 1 and trust["phase"] == "stable"
            return trust if done else None

        after = eventually_sync(rotated, 30, "the new root to take over", interval=0.2)
        assert after["phase"] == "stable" and after["signer"]["generation"] == 1, after
        assert after["signer"]["roots"] != before["signer"]["roots"]
        assert [r["fingerprint"] for r in after["roots"]] == after["signer"]["roots"]
        assert overview()["zones"][0]["zone"] == "lab"

        missing = cli("mesh", "rotate-ca", "nope")
        assert missing.exit_code != 0 and "nope" in missing.output
        trust_doc = tmp_path / "trust.yaml"
        trust_doc.write_text("type: MeshTrust\nname: default\nspec: {signer: {backend: x, "
                             "type: builtin}, trustBundle: '', bundleDigest: ''}\n")
        refused = cli("apply", "-f", str(trust_doc))
        assert refused.exit_code != 0
        assert "written by the control planes only" in refused.output

