"""The vault CA backend signing against a real OpenBao: zone intermediates that chain to the
root (also from a mount whose CA is an intermediate), issue mode's leaves with exactly the
URIs asked for, and the roles and keys it refuses, in Vault's words where they are
Vault's.

One OpenBao dev server per module (the ``bao`` fixture, ``conftest.py`` here); each test
makes its own tokens, roles and auth methods.
"""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa

from gossamer.pki.backends.base import CaRefused
from gossamer.pki.certs import (
    ZONE_CA_NAME,
    CsrRefused,
    KeyPair,
    chain_root,
    fingerprint,
    new_csr,
    new_key,
    sign_leaf,
    uri_sans,
)
from tests.integration.vault.vault_env import (
    CORP,
    HOUR,
    NOW,
    PKI,
    root_of,
    token_provider,
    zone_csr,
)
from tests.openbao import OpenBao


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

