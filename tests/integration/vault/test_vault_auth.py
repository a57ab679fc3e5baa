"""The vault CA backend's authentication against a real OpenBao: TLS client certificates,
AppRole (logging in again when its token is revoked), wrong secrets, unknown tokens and
denying policies named; and the wiring through ``provider_for`` and a ResourceManager, which
reads the mesh's Secrets.

One OpenBao dev server per module (the ``bao`` fixture, ``conftest.py`` here); each test
makes its own tokens, roles and auth methods.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from gossamer.model.registry import parse_document
from gossamer.pki.backends import VaultProvider, provider_for
from gossamer.pki.backends.base import CaRefused, InvalidCaMaterial
from gossamer.pki.certs import chain_root, new_leaf, new_root_ca
from gossamer.resources import ResourceManager
from gossamer.store.memory import MemoryStore
from tests.integration.vault.vault_env import (
    HOUR,
    NOW,
    PKI,
    backend,
    reader,
    root_of,
    token_provider,
    zone_csr,
)
from tests.openbao import OpenBao


async def test_tls_client_certificate_auth_signs(bao: OpenBao) -> None:
    client_ca = new_root_ca("Gossamer clients", NOW, 24 * HOUR)
    client = new_leaf(client_ca, "gossamer-global", NOW, 24 * HOUR, server=False)
    bao.enable_cert_auth("gossamer", client_ca.cert_pem(), ["zones"])
    secrets = {"vault-ca": bao.ca_pem, "client-cert": client.cert_pem(),
               "client-key": client.key_pem()}
    provider = VaultProvider("payments", backend(bao, {"tls": {
        "clientCertSecretRef": "client-cert", "clientKeySecretRef": "client-key"}}),
        reader(secrets))
    await provider.check()
    signed = await provider.sign_intermediate(zone_csr(), NOW, HOUR)
    assert chain_root([signed.certificate], signed.roots) == root_of(bao)
    await provider.close()
    # A client certificate Vault does not trust: refused, naming the auth method.
    stranger = new_leaf(new_root_ca("Strangers", NOW, HOUR), "x", NOW, HOUR, server=False)
    secrets |= {"client-cert": stranger.cert_pem(), "client-key": stranger.key_pem()}
    refused = VaultProvider("payments", backend(bao, {"tls": {
        "clientCertSecretRef": "client-cert", "clientKeySecretRef": "client-key"}}),
        reader(secrets))
    with pytest.raises(CaRefused, match="refused the TLS certificate login"):
        await refused.sign_intermediate(zone_csr(), NOW, HOUR)
    await refused.close()


async def test_approle_auth_signs_and_logs_in_again_when_its_token_is_revoked(
        bao: OpenBao) -> None:
    role_id, secret_id = bao.enable_approle("gossamer-global", ["zones"])
    provider = VaultProvider("payments", backend(bao, {"approle": {
        "roleId": role_id, "secretId": {"secretRef": "approle-secret"}}}),
        reader({"vault-ca": bao.ca_pem, "approle-secret": secret_id.encode()}))
    signed = await provider.sign_intermediate(zone_csr(), NOW, HOUR)
    assert chain_root([signed.certificate], signed.roots) == root_of(bao)
    # Revoke the token the login gave: the next request gets 403, logs in, and succeeds.
    assert provider.session.client is not None
    bao.client().auth.token.revoke(provider.session.client.token)
    signed = await provider.sign_intermediate(zone_csr(), NOW, HOUR)
    assert chain_root([signed.certificate], signed.roots) == root_of(bao)
    await provider.close()


async def test_a_wrong_approle_secret_is_refused_naming_approle(bao: OpenBao) -> None:
    role_id, _ = bao.enable_approle("gossamer-other", ["zones"])
    provider = VaultProvider("payments", backend(bao, {"approle": {
        "roleId": role_id, "secretId": {"secretRef": "approle-secret"}}}),
        reader({"vault-ca": bao.ca_pem, "approle-secret": b"not-the-secret-id"}))
    with pytest.raises(CaRefused, match="refused the AppRole login") as refused:
        await provider.check()
    assert "mesh payments, backend vault-1" in str(refused.value)
    await provider.close()


async def test_a_token_vault_does_not_know_is_refused_naming_token_auth(bao: OpenBao) -> None:
    provider = VaultProvider("payments", backend(bao, {"token": {"secretRef": "vault-token"}}),
                             reader({"vault-ca": bao.ca_pem, "vault-token": b"s.bogus"}))
    with pytest.raises(CaRefused, match="does not accept the token from secret 'vault-token'"):
        await provider.sign_intermediate(zone_csr(), NOW, HOUR)
    await provider.close()


async def test_a_policy_that_denies_the_path_is_refused(bao: OpenBao) -> None:
    provider = token_provider(bao, ["read-only"])
    with pytest.raises(CaRefused, match=f"denied POST {PKI}/root/sign-intermediate: the "
                                        "token's policy does not allow it"):
        await provider.sign_intermediate(zone_csr(), NOW, HOUR)
    # check() finds it before anything is signed.
    with pytest.raises(CaRefused, match=f"does not allow {PKI}/root/sign-intermediate"):
        await provider.check()
    await provider.close()


def secret_doc(name: str, data: bytes) -> dict[str, Any]:
    return {"type": "Secret", "name": name, "mesh": "payments",
            "data": base64.b64encode(data).decode()}


async def test_provider_for_reads_the_mesh_secrets(bao: OpenBao) -> None:
    manager = ResourceManager(MemoryStore())
    await manager.apply(parse_document({"type": "Mesh", "name": "payments"}))
    for doc in (secret_doc("vault-ca", bao.ca_pem),
                secret_doc("vault-token", bao.create_token(["zones"]).encode())):
        await manager.apply(parse_document(doc))
    conf = backend(bao, {"token": {"secretRef": "vault-token"}})
    provider = provider_for(manager, "payments", conf)
    await provider.check()
    signed = await provider.sign_intermediate(zone_csr(), NOW, HOUR)
    assert chain_root([signed.certificate], signed.roots) == root_of(bao)
    # The same configuration gets the same (logged-in) provider; closing it only drops
    # its connections until the next use.
    assert provider_for(manager, "payments", conf) is provider
    await provider.close()
    signed = await provider.sign_intermediate(zone_csr(), NOW, HOUR)
    assert chain_root([signed.certificate], signed.roots) == root_of(bao)
    changed = backend(bao, {"token": {"secretRef": "vault-token"}}, mode="issue")
    assert provider_for(manager, "payments", changed) is not provider
    # A secret the mesh lacks is named with the mesh.
    missing = provider_for(manager, "payments",
                           backend(bao, {"token": {"secretRef": "no-such-token"}}))
    with pytest.raises(InvalidCaMaterial, match="'no-such-token' does not exist in mesh "
                                                "'payments'"):
        await missing.check()

