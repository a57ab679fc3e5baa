"""``gossamer token rotate-signing-key --dataplane``: a mesh's new key signs its next token."""

from __future__ import annotations

import re

from tests.integration.cli_env import Session, _jwt_claims, _ok, _one_line_error


def test_rotating_a_meshs_dataplane_key_changes_the_signer(cp: Session) -> None:
    rotated = re.match(r"added dataplane token signing key of mesh default (\w+):",
                       _ok(cp.cli("token", "rotate-signing-key", "--dataplane")))
    assert rotated is not None
    header, _ = _jwt_claims(_ok(cp.cli("token", "dataplane", "--service", "web")).strip())
    assert header["kid"] == rotated[1]
    assert "nowhere" in _one_line_error(
        cp.cli("token", "rotate-signing-key", "--dataplane", "-m", "nowhere"), 1)
    assert "only with --dataplane" in _one_line_error(
        cp.cli("token", "rotate-signing-key", "-m", "default"), 2)
