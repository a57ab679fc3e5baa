"""Provided CA material without a network: which certificate chains and keys a provided
backend accepts, and why it refuses the others (no CA, wrong key, expired or not yet valid,
key usage, path length, chains that do not link). Certificates with unusual extensions are
built with ``cryptography`` directly (``tests/unit/ca_material.py``).
"""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from gossamer.pki.backends import validate_provided
from gossamer.pki.backends.base import InvalidCaMaterial, path_to_root
from gossamer.pki.certs import PrivateKey, new_leaf, new_root_ca
from tests.unit.ca_material import DAY, HOUR, NOW, make_ca, pem


def traditional(key: PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


def refusal(cert: bytes, key: bytes, now: dt.datetime = NOW) -> InvalidCaMaterial:
    with pytest.raises(InvalidCaMaterial) as refused:
        validate_provided(cert, key, now)
    return refused.value


def test_a_self_signed_root_with_its_key_is_accepted() -> None:
    root = make_ca("Corp root", path_length=1)
    ca, chain, roots = validate_provided(root.cert_pem(), root.key_pem(), NOW)
    assert ca.cert == root.cert
    assert chain == ()
    assert roots == (root.cert,)


def test_an_intermediate_followed_by_its_root_gives_the_chain_and_the_root() -> None:
    root = make_ca("Corp root")
    inter = make_ca("Corp mesh CA", root, path_length=1)
    ca, chain, roots = validate_provided(pem(inter, root), traditional(inter.key), NOW)
    assert ca.cert == inter.cert
    assert chain == (inter.cert,)
    assert roots == (root.cert,)


def test_rsa_keys_in_both_encodings_are_accepted() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    root = make_ca("RSA root", key=key)
    for encoded in (root.key_pem(), traditional(key)):
        assert validate_provided(root.cert_pem(), encoded, NOW)[0].key.key_size == 2048  # type: ignore[union-attr]


@pytest.mark.parametrize("cert", [b"", b"hello", b"-----BEGIN PRIVATE KEY-----\nAAAA\n"
                                                 b"-----END PRIVATE KEY-----\n"])
def test_no_pem_certificate_is_refused(cert: bytes) -> None:
    refused = refusal(cert, make_ca("x").key_pem())
    assert refused.part == "cert"
    assert "the certificate is not PEM: no '-----BEGIN CERTIFICATE-----' block" in str(refused)


def test_a_certificate_block_that_does_not_parse_is_refused() -> None:
    refused = refusal(b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
                      make_ca("x").key_pem())
    assert "the certificate PEM does not parse" in str(refused)


def test_a_key_that_is_not_pem_is_refused() -> None:
    root = make_ca("x")
    refused = refusal(root.cert_pem(), b"not a key")
    assert refused.part == "key"
    assert "the key is not a PEM private key" in str(refused)


def test_an_encrypted_key_is_refused() -> None:
    root = make_ca("x")
    encrypted = root.key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.BestAvailableEncryption(b"pw"))
    assert "the key is encrypted with a passphrase" in str(refusal(root.cert_pem(), encrypted))


def test_a_key_other_than_ecdsa_or_rsa_is_refused() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    encoded = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    refused = refusal(make_ca("x").cert_pem(), encoded)
    assert "only ECDSA and RSA keys are supported" in str(refused)


def test_a_certificate_without_basic_constraints_is_not_a_ca() -> None:
    cert = make_ca("Plain", ca=None)
    assert str(refusal(cert.cert_pem(), cert.key_pem())) == (
        "certificate 'CN=Plain' is not a CA: it has no basicConstraints extension")


def test_a_leaf_certificate_is_not_a_ca() -> None:
    leaf = new_leaf(new_root_ca("r", NOW, DAY), "web", NOW, HOUR)
    refused = refusal(pem(leaf), leaf.key_pem())
    assert "is not a CA: its basicConstraints say CA:FALSE" in str(refused)
    assert refused.part == "cert"


def test_a_key_that_does_not_match_is_refused() -> None:
    root, other = make_ca("Corp root"), make_ca("Other")
    refused = refusal(root.cert_pem(), other.key_pem())
    assert refused.part == "key"
    assert str(refused) == ("the key does not match certificate 'CN=Corp root': it is the "
                            "private key of another certificate")


def test_an_expired_ca_is_refused_with_its_dates() -> None:
    root = make_ca("Old root", not_before=NOW - 400 * DAY, not_after=NOW - 30 * DAY)
    assert str(refusal(root.cert_pem(), root.key_pem())) == (
        "certificate 'CN=Old root' has expired: valid until 2026-10-27 12:00:00 UTC "
        "(now 2026-11-26 12:00:00 UTC)")


def test_a_ca_not_valid_yet_is_refused_with_its_dates() -> None:
    root = make_ca("Future root", not_before=NOW + DAY)
    assert str(refusal(root.cert_pem(), root.key_pem())) == (
        "certificate 'CN=Future root' is not valid yet: valid from 2026-11-27 12:00:00 UTC "
        "(now 2026-11-26 12:00:00 UTC)")


def test_an_expired_root_above_a_valid_intermediate_is_refused() -> None:
    root = make_ca("Old root", not_before=NOW - 400 * DAY, not_after=NOW - DAY)
    inter = make_ca("Mesh CA", root, path_length=1)
    assert "certificate 'CN=Old root' has expired" in str(refusal(pem(inter, root),
                                                                  inter.key_pem()))


def test_a_key_usage_without_key_cert_sign_is_refused() -> None:
    root = make_ca("Signer", key_cert_sign=False)
    assert str(refusal(root.cert_pem(), root.key_pem())) == (
        "certificate 'CN=Signer' has a keyUsage without keyCertSign: it may not sign "
        "certificates")


def test_no_key_usage_at_all_is_accepted() -> None:
    root = make_ca("Unrestricted", key_cert_sign=None)
    assert validate_provided(root.cert_pem(), root.key_pem(), NOW)[2] == (root.cert,)


def test_path_length_zero_is_refused() -> None:
    root = make_ca("Leaf-only CA", path_length=0)
    assert str(refusal(root.cert_pem(), root.key_pem())) == (
        "certificate 'CN=Leaf-only CA' has pathLenConstraint 0: it could not sign the zones' "
        "intermediate CAs; it needs a pathLenConstraint of at least 1, or none")


def test_a_root_whose_path_length_leaves_no_room_for_the_chain_is_refused() -> None:
    root = make_ca("Corp root", path_length=1)
    inter = make_ca("Mesh CA", root)   # below the root: this CA and the zones' intermediates
    refused = refusal(pem(inter, root), inter.key_pem())
    assert ("certificate 'CN=Corp root' has pathLenConstraint 1, but 2 CA certificates would "
            "sit below it") in str(refused)


def test_a_chain_whose_signatures_do_not_link_is_refused() -> None:
    root, stranger = make_ca("Corp root"), make_ca("Stranger root")
    inter = make_ca("Mesh CA", root)
    assert str(refusal(pem(inter, stranger), inter.key_pem())) == (
        "certificate #2 'CN=Stranger root' did not sign certificate #1 'CN=Mesh CA': list the "
        "CA certificate first, then each issuer in order up to the root")


def test_an_intermediate_without_its_root_is_refused() -> None:
    root = make_ca("Corp root")
    inter = make_ca("Mesh CA", root)
    assert str(refusal(inter.cert_pem(), inter.key_pem())) == (
        "the chain ends at 'CN=Mesh CA', issued by 'CN=Corp root', which is not in the "
        "secret: add the root certificate ('CN=Corp root', self-signed) after it in the same "
        "secret; sidecars need a self-signed root to trust")


def test_path_to_root_follows_signatures_in_any_order() -> None:
    root = make_ca("Root")
    inter = make_ca("Inter", root)
    leaf = new_leaf(inter, "w", NOW, HOUR)
    assert path_to_root(leaf.cert, [root.cert, inter.cert]) == ((inter.cert,), root.cert)
    assert path_to_root(leaf.cert, [inter.cert]) == ((inter.cert,), None)
    assert path_to_root(root.cert, []) == ((), root.cert)

