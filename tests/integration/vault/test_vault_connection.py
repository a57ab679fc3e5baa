"""The vault CA backend's connection to a real OpenBao: a paused Vault is unreachable within
seconds and signing recovers, an address nothing listens on is named, TLS is verified by
default (a server name or skip-verify connects), and a namespace is sent with every
request.

One OpenBao dev server per module (the ``bao`` fixture, ``conftest.py`` here); each test
makes its own tokens, roles and auth methods.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from cryptography import x509

from gossamer.model.mesh import CaBackend
from gossamer.pki.backends import VaultProvider
from gossamer.pki.backends.base import CaRefused, CaUnreachable
from gossamer.pki.certs import chain_root, fingerprint, new_root_ca
from tests.integration.vault.vault_env import (
    HOUR,
    NOW,
    backend,
    reader,
    root_of,
    token_provider,
    zone_csr,
)
from tests.openbao import OpenBao
from tests.pg import free_port


async def test_a_paused_vault_is_unreachable_within_seconds_and_signing_recovers(
        bao: OpenBao) -> None:
    provider = token_provider(bao, ["zones"])
    await provider.sign_intermediate(zone_csr(), NOW, HOUR)   # logged in, connection open
    bao.pause()
    try:
        started = time.monotonic()
        with pytest.raises(CaUnreachable, match=f"Vault at {bao.address} does not answer"):
            await provider.sign_intermediate(zone_csr(), NOW, HOUR)
        assert time.monotonic() - started < 10
    finally:
        bao.resume()
    signed = await provider.sign_intermediate(zone_csr(), NOW, HOUR)
    assert chain_root([signed.certificate], signed.roots) == root_of(bao)
    await provider.close()


async def test_an_address_nothing_listens_on_is_unreachable_naming_it(bao: OpenBao) -> None:
    address = f"https://127.0.0.1:{free_port()}"
    provider = VaultProvider("payments", backend(bao, {"token": {"secretRef": "t"}},
                                                 address=address),
                             reader({"vault-ca": bao.ca_pem, "t": b"x"}))
    started = time.monotonic()
    with pytest.raises(CaUnreachable) as unreachable:
        await provider.check()
    assert time.monotonic() - started < 6
    assert str(unreachable.value) == (f"mesh payments, backend vault-1: Vault at {address} "
                                      "does not answer: connection refused")
    await provider.close()


@pytest.mark.parametrize("tls, message", [
    ({}, "certificate verify failed"),                                  # the system's CAs
    ({"caCertSecretRef": "other-ca"}, "certificate verify failed"),     # another CA
    ({"caCertSecretRef": "vault-ca", "serverName": "vault.elsewhere"},  # another name
     "vault.elsewhere"),
])
async def test_tls_is_verified_by_default(bao: OpenBao, tls: dict[str, Any],
                                          message: str) -> None:
    other = new_root_ca("Some other CA", NOW, HOUR).cert_pem()
    secrets = {"vault-ca": bao.ca_pem, "other-ca": other,
               "vault-token": bao.create_token(["zones"]).encode()}
    provider = VaultProvider("payments", backend(bao, {"token": {"secretRef": "vault-token"}},
                                                 tls=tls), reader(secrets))
    with pytest.raises(CaRefused, match="TLS with Vault at") as refused:
        await provider.check()
    assert message in str(refused.value)
    await provider.close()


@pytest.mark.parametrize("tls", [{"caCertSecretRef": "vault-ca", "serverName": "localhost"},
                                 {"skipVerify": True}])
async def test_a_server_name_or_skip_verify_connects(bao: OpenBao, tls: dict[str, Any]) -> None:
    secrets = {"vault-ca": bao.ca_pem, "vault-token": bao.create_token(["zones"]).encode()}
    provider = VaultProvider("payments", backend(bao, {"token": {"secretRef": "vault-token"}},
                                                 tls=tls), reader(secrets))
    await provider.check()
    assert [fingerprint(r) for r in await provider.roots()] == [fingerprint(root_of(bao))]
    await provider.close()


async def test_a_namespace_is_sent_with_every_request(bao: OpenBao) -> None:
    bao.create_namespace("team-a")
    root = x509.load_pem_x509_certificate(bao.enable_pki("pki-team", "Team root",
                                                         namespace="team-a"))
    secrets = {"vault-ca": bao.ca_pem, "vault-token": bao.root_token.encode()}
    auth = {"token": {"secretRef": "vault-token"}}
    conf = backend(bao, auth, pki="pki-team").conf
    assert conf is not None
    in_namespace = CaBackend.model_validate({"name": "vault-1", "type": "vault", "conf": {
        **conf.model_dump(by_alias=True, exclude_none=True), "namespace": "team-a"}})
    provider = VaultProvider("payments", in_namespace, reader(secrets))
    signed = await provider.sign_intermediate(zone_csr(), NOW, HOUR)
    assert chain_root([signed.certificate], signed.roots) == root
    await provider.close()
    # Outside the namespace the mount does not exist.
    outside = VaultProvider("payments", backend(bao, auth, pki="pki-team"), reader(secrets))
    with pytest.raises(CaRefused, match="has nothing at pki-team/cert/ca_chain"):
        await outside.roots()
    await outside.close()

