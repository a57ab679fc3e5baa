"""The agent's keys made in a child process (``proxy.agent.keys``/``keygen``), and the
trust bundle checks the agent does without ``cryptography`` (``proxy.agent.identity``).

The child is the real ``python -m proxy.agent.keygen``; the CA is a real one."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gossamer.pki import certs
from gossamer.pki.certs import KeyPair, new_root_ca, sign_leaf
from proxy.agent import identity
from proxy.agent.errors import ControlPlaneProtocolError
from proxy.agent.identity import SignedCertificate
from proxy.agent.keygen import matches
from proxy.agent.keys import child_request

NOW = dt.datetime.now(dt.UTC)
DAY = dt.timedelta(days=1)
URI = "spiffe://default/backend"


def sign(ca: KeyPair, csr_pem: bytes, lifetime: dt.timedelta = DAY,
         start: dt.datetime = NOW) -> SignedCertificate:
    cert = sign_leaf(ca, x509.load_pem_x509_csr(csr_pem), start, lifetime, uris=[URI])
    return SignedCertificate(KeyPair(cert, ca.key).cert_pem(), ca.cert_pem(),
                             cert.not_valid_after_utc)


async def test_the_child_makes_a_key_and_hands_it_over_for_its_certificate() -> None:
    ca = new_root_ca("test", NOW - DAY, 365 * DAY)
    request = await child_request("backend-1")
    try:
        csr = x509.load_pem_x509_csr(request.csr_pem)
        assert csr.is_signature_valid
        signed = sign(ca, request.csr_pem)
        ident = await request.accept(signed, NOW)
    finally:
        await request.close()
    key = serialization.load_pem_private_key(ident.key_pem(), password=None)
    leaf = x509.load_pem_x509_certificate(ident.chain_pem)
    assert matches(leaf, key)  # type: ignore[arg-type]
    assert ident.uris == (URI,)
    assert ident.not_after == leaf.not_valid_after_utc
    assert ident.received_at == NOW
    assert "PRIVATE KEY" not in repr(ident)


async def test_the_child_keeps_its_key_for_a_certificate_of_another_key() -> None:
    ca = new_root_ca("test", NOW - DAY, 365 * DAY)
    other = await child_request("backend-1")
    request = await child_request("backend-1")
    try:
        with pytest.raises(ControlPlaneProtocolError, match="for another key"):
            await request.accept(sign(ca, other.csr_pem), NOW)
    finally:
        await request.close()
        await other.close()


async def test_the_child_refuses_an_expired_certificate() -> None:
    ca = new_root_ca("test", NOW - 3 * DAY, 365 * DAY)
    request = await child_request("backend-1")
    try:
        with pytest.raises(ControlPlaneProtocolError, match="expired"):
            await request.accept(sign(ca, request.csr_pem, DAY, NOW - 2 * DAY), NOW)
    finally:
        await request.close()


async def test_a_request_closed_unanswered_ends_its_child() -> None:
    request = await child_request("backend-1")
    await request.close()
    assert request._proc.returncode == 0


def test_the_bundle_digest_is_the_control_planes() -> None:
    """The CP compares the digest the agent reports with its own: they must agree on
    any bundle, whatever the order and the text around the blocks."""
    a = new_root_ca("a", NOW, DAY).cert_pem()
    b = new_root_ca("b", NOW, DAY).cert_pem()
    for pem in (a, a + b, b + a, b"\n" + b + b"junk between\n" + a + b"\n", a + a):
        assert identity.bundle_digest(pem) == certs.bundle_digest(pem)
    assert identity.bundle_digest(a + b) == identity.bundle_digest(b + a)
    assert identity.bundle_digest(a) != identity.bundle_digest(b)
    assert identity.bundle_digest(b"") == certs.bundle_digest(b"") == ""


def test_a_bundle_that_does_not_parse_is_refused() -> None:
    a = new_root_ca("a", NOW, DAY).cert_pem()
    assert identity.check_bundle(a) == 1
    assert identity.check_bundle(a + new_root_ca("b", NOW, DAY).cert_pem()) == 2
    broken_der = a.replace(a.splitlines()[3], b"A" * len(a.splitlines()[3]))
    for bad in (b"", b"nope", a.replace(b"M", b"!", 1), broken_der, "é".encode() + a):
        with pytest.raises(ControlPlaneProtocolError, match="does not parse"):
            identity.check_bundle(bad)
