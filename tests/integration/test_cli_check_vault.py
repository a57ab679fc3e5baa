"""``gossamer check`` and a mesh whose CA is a real OpenBao (the ``bao`` fixture): up, the
check passes that line; stopped, the line fails with the reason and the fix, and the
exit status is 1."""

from __future__ import annotations

import base64
from pathlib import Path

from gossamer.model.registry import parse_document
from tests.integration.ca_rotation_env import PKI
from tests.integration.federation_env import Planes
from tests.integration.test_cli_check import run_check
from tests.openbao import OpenBao

MESH = "payments"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def test_a_stopped_vault_fails_the_ca_backend_check(planes: Planes, tmp_path: Path,
                                                          bao: OpenBao) -> None:
    g = await planes.global_cp()
    assert g.store is not None
    for name, data in (("vault-token", bao.create_token(["zones"]).encode()),
                       ("vault-ca", bao.ca_pem)):
        await g.store.create(parse_document({"type": "Secret", "name": name, "mesh": MESH,
                                             "data": _b64(data)}))
    await g.store.create(parse_document({
        "type": "Mesh", "name": MESH, "mtls": {"enabledBackend": "vault-1", "backends": [{
            "name": "vault-1", "type": "vault", "conf": {
                "address": bao.address, "pki": PKI, "role": "workloads",
                "mode": "intermediate", "auth": {"token": {"secretRef": "vault-token"}},
                "tls": {"caCertSecretRef": "vault-ca"}}}]}}))

    up = await run_check(g, tmp_path)
    assert "up" in up.line(f"✓ mesh {MESH} CA backend vault-1 (vault)")

    bao.stop()
    down = await run_check(g, tmp_path)
    assert down.code == 1, down.out
    line = down.line(f"✗ mesh {MESH} CA backend vault-1 (vault)")
    assert f"Vault at {bao.address} does not answer: connection refused" in line, line
    assert "fix: make the backend reachable" in down.out
    down.line("✓ mesh default CA backend ca-1 (builtin)")
