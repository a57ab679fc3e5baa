"""The vault CA backend against a real OpenBao dev server (``tests/openbao.py``).

One server per module, with a PKI mount whose root is self-signed (``pki-payments``) and
one whose CA is an intermediate of it (``pki-corp``); each test makes its own tokens,
roles and auth methods. Providers read their Secrets from a dict, except where the wiring
through ``provider_for`` and a ResourceManager is the point.
"""

from __future__ import annotations

import base64
import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa

from gossamer.model.mesh import CaBackend
from gossamer.model.registry import parse_document
from gossamer.pki.backends import VaultProvider, provider_for
from gossamer.pki.backends.base import CaRefused, CaUnreachable, InvalidCaMaterial, SecretReader
from gossamer.pki.certs import (
    ZONE_CA_NAME,
    CsrRefused,
    KeyPair,
    chain_root,
    fingerprint,
    new_csr,
    new_key,
    new_leaf,
    new_root_ca,
    sign_leaf,
    uri_sans,
)
from gossamer.resources import ResourceManager
from gossamer.store.memory import MemoryStore
from tests.openbao import OpenBao, OpenBaoUnavailable
from tests.pg import free_port

PKI = "pki-payments"
CORP = "pki-corp"
NOW = dt.datetime.now(dt.UTC)
HOUR = dt.timedelta(hours=1)


@pytest.fixture(scope="module")
def bao() -> Iterator[OpenBao]:
    try:
        server = OpenBao.start()
    except OpenBaoUnavailable as exc:
        pytest.fail(f"OpenBao is needed for these tests: {exc}")
    with server:
        server.enable_pki(PKI, common_name="Payments root")
        server.enable_intermediate_pki(CORP, PKI, common_name="Corp issuing CA")
        server.create_role(PKI, "workloads")
        server.write_policy("zones", server.pki_policy(PKI, "root/sign-intermediate"))
        server.write_policy("corp-zones", server.pki_policy(CORP, "root/sign-intermediate"))
        server.write_policy("issue", server.pki_policy(PKI, "sign/*"))
        server.write_policy("read-only", server.pki_policy(PKI))
        yield server


def root_of(bao: OpenBao, mount: str = PKI) -> x509.Certificate:
    pem = bao.client().read(f"{mount}/cert/ca_chain")["data"]["ca_chain"]
    return next(c for c in x509.load_pem_x509_certificates(pem.encode())
                if c.subject == c.issuer)


def reader(secrets: dict[str, bytes]) -> SecretReader:
    async def read(name: str) -> bytes:
        if name not in secrets:
            raise InvalidCaMaterial(f"secret {name!r} does not exist")
        return secrets[name]
    return read


def backend(bao: OpenBao, auth: dict[str, Any], *, mode: str = "intermediate",
            pki: str = PKI, role: str = "workloads", tls: dict[str, Any] | None = None,
            address: str | None = None) -> CaBackend:
    return CaBackend.model_validate({"name": "vault-1", "type": "vault", "conf": {
        "address": address or bao.address, "pki": pki, "role": role, "mode": mode,
        "auth": auth, "tls": tls if tls is not None else {"caCertSecretRef": "vault-ca"}}})


def token_provider(bao: OpenBao, policies: list[str], **kw: Any) -> VaultProvider:
    secrets = {"vault-ca": bao.ca_pem, "vault-token": bao.create_token(policies).encode()}
    return VaultProvider("payments", backend(bao, {"token": {"secretRef": "vault-token"}}, **kw),
                         reader(secrets))


def zone_csr() -> x509.CertificateSigningRequest:
    return new_csr(new_key(), "zone west payments")


# -- intermediate mode --------------------------------------------------------------------


async def test_a_zone_intermediate_is_signed_by_vault_and_chains_to_its_root(
        bao: OpenBao) -> None:
    provider = token_provider(bao, ["zones"])
    await provider.check()
    asked_at = dt.datetime.now(dt.UTC)  # NOW is the module's import time
    signed = await provider.sign_intermediate(zone_csr(), NOW, 2 * HOUR)
    root = root_of(bao)
    assert [fingerprint(r) for r in await provider.roots()] == [fingerprint(root)]
    assert signed.chain == ()
    assert chain_root([signed.certificate, *signed.chain], signed.roots) == root
    constraints = signed.certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.value.ca and constraints.value.path_length == 0
    # Named by the signer, not by the zone's CSR.
    assert signed.certificate.subject.rfc4514_string() == f"CN={ZONE_CA_NAME}"
    lifetime = signed.certificate.not_valid_after_utc - asked_at
    assert HOUR < lifetime <= 2 * HOUR + dt.timedelta(minutes=1)
    # The zone's intermediate signs workloads that chain to Vault's root.
    zone_key = new_key()
    signed = await provider.sign_intermediate(new_csr(zone_key, "zone east"), NOW, HOUR)
    leaf = sign_leaf(KeyPair(signed.certificate, zone_key), new_csr(new_key(), "w"), NOW, HOUR,
                     uris=["spiffe://payments/backend"])
    assert chain_root([leaf, signed.certificate, *signed.chain], signed.roots) == root
    await provider.close()


async def test_a_mount_whose_ca_is_an_intermediate_returns_it_in_the_chain(
        bao: OpenBao) -> None:
    provider = token_provider(bao, ["corp-zones"], pki=CORP)
    await provider.check()
    signed = await provider.sign_intermediate(zone_csr(), NOW, HOUR)
    assert [c.subject.rfc4514_string() for c in signed.chain] == ["CN=Corp issuing CA"]
    assert [fingerprint(r) for r in signed.roots] == [fingerprint(root_of(bao))]
    assert chain_root([signed.certificate, *signed.chain], await provider.roots()) is not None
    # Without the chain the intermediate does not reach the root.
    assert chain_root([signed.certificate], signed.roots) is None
    await provider.close()


# -- issue mode ---------------------------------------------------------------------------


async def test_issue_mode_returns_a_leaf_with_exactly_the_uris_asked_for(bao: OpenBao) -> None:
    provider = token_provider(bao, ["issue"], mode="issue")
    assert provider.issues_workloads
    await provider.check()
    # The CSR asks for another identity: only the URIs the control plane passes count.
    csr = new_csr(new_key(), "backend-1", ["spiffe://payments/admin"])
    uris = ["spiffe://payments/backend", "gossamer://version/v1"]
    signed = await provider.sign_workload(csr, uris, NOW, HOUR)
    assert sorted(uri_sans(signed.certificate)) == sorted(uris)
    san = signed.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.DNSName) == []
    constraints = signed.certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert not constraints.value.ca
    assert chain_root([signed.certificate, *signed.chain], signed.roots) == root_of(bao)
    with pytest.raises(Exception, match="mode issue"):
        await provider.sign_intermediate(zone_csr(), NOW, HOUR)
    # The subject is the role's: the CSR's common name is not copied.
    assert "backend-1" not in signed.certificate.subject.rfc4514_string()
    await provider.close()


async def test_a_weak_key_is_refused_before_vault_sees_it(bao: OpenBao) -> None:
    provider = token_provider(bao, ["issue"], mode="issue")
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
           .sign(weak, hashes.SHA256()))
    with pytest.raises(CsrRefused, match="the CSR's key is RSA-1024"):
        await provider.sign_workload(csr, ["spiffe://payments/backend"], NOW, HOUR)
    await provider.close()
    provider = token_provider(bao, ["zones"])
    with pytest.raises(CsrRefused, match="the CSR's key is RSA-1024"):
        await provider.sign_intermediate(csr, NOW, HOUR)
    await provider.close()


async def test_a_role_that_copies_the_csrs_common_name_is_refused(bao: OpenBao) -> None:
    bao.create_role(PKI, "csr-cn", use_csr_common_name=True)
    provider = token_provider(bao, ["issue"], mode="issue", role="csr-cn")
    with pytest.raises(CaRefused, match="use_csr_common_name=false"):
        await provider.check()
    await provider.close()


async def test_a_role_that_takes_sans_from_the_csr_is_refused(bao: OpenBao) -> None:
    bao.create_role(PKI, "csr-sans", use_csr_sans=True)
    provider = token_provider(bao, ["issue"], mode="issue", role="csr-sans")
    with pytest.raises(CaRefused, match="use_csr_sans"):
        await provider.check()
    csr = new_csr(new_key(), "backend-1", ["spiffe://payments/admin"])
    with pytest.raises(CaRefused, match="use_csr_sans=false"):
        await provider.sign_workload(csr, ["spiffe://payments/backend"], NOW, HOUR)
    await provider.close()


async def test_a_role_of_any_key_type_signs_and_another_key_type_is_refused_in_vaults_words(
        bao: OpenBao) -> None:
    # /sign takes the key from the CSR, so key_type any works (unlike /issue, which would
    # need key_type and key_bits in the request).
    bao.create_role(PKI, "any-key", key_type="any", key_bits=0)
    bao.create_role(PKI, "rsa-only", key_type="rsa", key_bits=2048)
    uris = ["spiffe://payments/backend"]
    provider = token_provider(bao, ["issue"], mode="issue", role="any-key")
    signed = await provider.sign_workload(new_csr(new_key(), "w"), uris, NOW, HOUR)
    assert uri_sans(signed.certificate) == uris
    await provider.close()
    provider = token_provider(bao, ["issue"], mode="issue", role="rsa-only")
    with pytest.raises(CaRefused, match=f"refused POST {PKI}/sign/rsa-only: role requires "
                                        "keys of type rsa"):
        await provider.sign_workload(new_csr(new_key(), "w"), uris, NOW, HOUR)
    await provider.close()


async def test_an_unknown_role_is_refused_with_a_clear_message(bao: OpenBao) -> None:
    provider = token_provider(bao, ["issue"], mode="issue", role="no-such-role")
    expected = f"role 'no-such-role' does not exist in PKI mount '{PKI}'"
    with pytest.raises(CaRefused, match=expected):
        await provider.sign_workload(new_csr(new_key(), "w"), ["spiffe://payments/b"], NOW, HOUR)
    with pytest.raises(CaRefused, match=expected):
        await provider.check()
    await provider.close()


# -- auth -----------------------------------------------------------------------------------


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


# -- Vault down, and TLS --------------------------------------------------------------------


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


# -- wiring ---------------------------------------------------------------------------------


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
