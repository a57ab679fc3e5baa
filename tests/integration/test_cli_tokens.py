"""The ``gossamer token`` commands against a real global: zone and dataplane tokens (JWTs
on stdout) and their revocation, and flags checked before anything is sent.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import main
from cli.state import Runtime
from tests.integration.cli_env import Session, _jwt_claims, _ok, _one_line_error


def test_zone_token_is_a_jwt_on_stdout_and_can_be_revoked(cp: Session) -> None:
    result = cp.run("token", "zone", "--zone", "east", "--scope", "cp", "--valid-for", "2h")
    token = _ok(result)
    assert token.endswith("\n") and token.count("\n") == 1  # `> east.token` holds only it
    header, claims = _jwt_claims(token.strip())
    assert header["alg"] == "EdDSA"
    assert (claims["sub"], claims["kind"], claims["scope"]) == ("east", "zone", ["cp"])
    assert claims["exp"] - claims["iat"] == 7200
    assert f"id {claims['jti']}" in result.stderr

    assert _ok(cp.run("token", "revoke", claims["jti"])) == (
        f"revoked zone token {claims['jti']}\n")

    rotated = re.match(r"added zone token signing key (\w+):",
                       _ok(cp.cli("token", "rotate-signing-key")))
    assert rotated is not None
    kid = rotated[1]
    header, _ = _jwt_claims(_ok(cp.cli("token", "zone", "--zone", "east")).strip())
    assert header["kid"] == kid


def test_dataplane_token_and_its_revocation(cp: Session) -> None:
    result = cp.cli("token", "dataplane", "--mesh", "default", "--service", "web")
    _, claims = _jwt_claims(_ok(result).strip())
    assert (claims["sub"], claims["kind"], claims["mesh"]) == ("web", "dataplane", "default")
    assert claims["exp"] - claims["iat"] == 24 * 3600
    assert f"gossamer token revoke {claims['jti']} --dataplane --mesh default" in result.stderr
    assert _ok(cp.cli("token", "revoke", claims["jti"], "--dataplane", "--mesh", "default")) == (
        f"revoked dataplane token (mesh default) {claims['jti']}\n")
    line = _one_line_error(cp.cli("token", "dataplane", "--mesh", "nowhere", "--service", "x"), 1)
    assert "nowhere" in line


@pytest.mark.parametrize(("args", "message"), [
    (["zone", "--zone", "east", "--valid-for", "soon"], 'expected a duration like "5s"'),
    (["zone", "--zone", "east", "--valid-for", "500ms"], "shorter than 1s"),
    (["zone", "--zone", "east", "--valid-for", "100000h"], "longer than ten years"),
    (["zone", "--zone", "East"], "lower-case"),
    (["zone", "--zone", "east", "--scope", "admin"], "'admin' is not one of"),
    (["revoke", "abc", "--mesh", "default"], "only with --dataplane"),
])
def test_token_flags_are_checked_before_anything_is_sent(tmp_path: Path, args: list[str],
                                                         message: str) -> None:
    # No control plane is configured: a usage error must come before any attempt to reach one.
    runtime = Runtime(env={"GOSSAMER_CONFIG": str(tmp_path / "none.yaml")})
    result = CliRunner().invoke(main, ["token", *args], obj=runtime)
    assert message in _one_line_error(result, 2)

