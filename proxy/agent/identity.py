"""The workload identity the agent holds: its private key, its certificate, the trust
bundle, and when to renew.

The key is made here and kept in memory only: Envoy receives it over SDS (a unix socket
in the agent's 0700 work directory), so it is never written to disk. The zone CP signs a
CSR that carries just a common name; the identity (SPIFFE URI SANs) is the CP's decision,
taken from the registered Dataplane. A signed certificate is checked against the key
before it is used, so a confused CP cannot make Envoy serve a certificate it cannot use.

Renewal: at two thirds of the lifetime, counted from when the agent received the
certificate (not from ``notBefore``, which the CA backdates by minutes: for a short-lived
certificate that would put the renewal in the past). A failed renewal is retried with
exponential backoff, capped so that several retries still fit before expiry.

Pure: no clock is read here (``now`` is passed in), no I/O.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gossamer.pki.certs import KeyPair, PrivateKey, new_csr, new_key, uri_sans
from proxy.agent.errors import ControlPlaneProtocolError

RENEW_AT = 2 / 3
RETRY_INITIAL = 1.0
RETRY_MAX = 60.0
MIN_RENEW_DELAY = 0.5  # never spin, even on a certificate that is already past due


@dataclass(frozen=True)
class SignedCertificate:
    """What the CP's ``SignCertificate`` returned, parsed at the edge."""

    chain_pem: bytes
    trust_bundle_pem: bytes
    expires_at: dt.datetime


@dataclass(frozen=True)
class Identity:
    """A key, its certificate chain, and when it arrived: everything SDS serves as
    ``tls_certificate``. ``received_at`` anchors the renewal time."""

    key: PrivateKey
    chain_pem: bytes
    received_at: dt.datetime

    @property
    def leaf(self) -> x509.Certificate:
        return x509.load_pem_x509_certificates(self.chain_pem)[0]

    @property
    def not_after(self) -> dt.datetime:
        return self.leaf.not_valid_after_utc

    @property
    def uris(self) -> list[str]:
        return uri_sans(self.leaf)

    def key_pem(self) -> bytes:
        return KeyPair(self.leaf, self.key).key_pem()

    def renew_at(self) -> dt.datetime:
        return renewal_time(self.received_at, self.not_after)


def new_request(common_name: str, key_type: str = "ecdsa-p256") -> tuple[PrivateKey, bytes]:
    """A fresh key and a PEM CSR for it."""
    key = new_key(key_type)
    csr = new_csr(key, common_name)
    return key, csr.public_bytes(serialization.Encoding.PEM)


def accept(key: PrivateKey, signed: SignedCertificate, now: dt.datetime) -> Identity:
    """Check the CP's answer and pair it with the key (``ControlPlaneProtocolError`` if
    the chain does not parse, is for another key, or has already expired)."""
    try:
        chain = x509.load_pem_x509_certificates(signed.chain_pem)
    except ValueError:
        raise ControlPlaneProtocolError("the control plane sent a certificate chain that "
                                        "does not parse") from None
    if not matches(chain[0], key):
        raise ControlPlaneProtocolError("the control plane signed a certificate for another key")
    if chain[0].not_valid_after_utc <= now:
        raise ControlPlaneProtocolError("the control plane sent an expired certificate")
    if signed.trust_bundle_pem:
        check_bundle(signed.trust_bundle_pem)
    return Identity(key=key, chain_pem=signed.chain_pem, received_at=now)


def matches(cert: x509.Certificate, key: PrivateKey) -> bool:
    """Whether ``key`` is the private key of ``cert``."""
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return bool(cert.public_key().public_bytes(*spki) == key.public_key().public_bytes(*spki))


def check_bundle(pem: bytes) -> list[x509.Certificate]:
    """The trust bundle's certificates (``ControlPlaneProtocolError`` if none parse)."""
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise ControlPlaneProtocolError("the control plane sent a trust bundle that does "
                                        "not parse") from None
    return certs


def renewal_time(received_at: dt.datetime, not_after: dt.datetime) -> dt.datetime:
    """Two thirds of the way from receipt to expiry."""
    return received_at + (not_after - received_at) * RENEW_AT


def retry_delay(attempt: int, now: dt.datetime, not_after: dt.datetime) -> float:
    """Seconds before retry number ``attempt`` (1-based) of a failed renewal.

    Doubles from ``RETRY_INITIAL`` up to ``RETRY_MAX``, and never more than a quarter of
    the time left, so a short-lived certificate still gets several tries before it
    expires. After expiry it keeps trying at the initial pace: Envoy is serving an expired
    certificate and every success matters.
    """
    delay = min(RETRY_INITIAL * 2 ** (attempt - 1), RETRY_MAX)
    left = (not_after - now).total_seconds()
    if left <= 0:
        return RETRY_INITIAL
    return max(min(delay, left / 4), MIN_RENEW_DELAY)
