"""The workload identity the agent holds: its private key, its certificate, the trust
bundle, and when to renew.

The key is made in a short-lived child process (``proxy.agent.keygen``, which alone
loads ``cryptography``) and kept in the agent's memory only: Envoy receives it over SDS
(a unix socket in the agent's 0700 work directory), so it is never written to disk. The
zone CP signs a CSR that carries just a common name; the identity (SPIFFE URI SANs) is
the CP's decision, taken from the registered Dataplane. The child checks a signed
certificate against the key before it hands the key over, so a confused CP cannot make
Envoy serve a certificate it cannot use; what the agent keeps is plain data
(``Identity``): PEM bytes, the expiry and the URIs.

Renewal: at two thirds of the lifetime, counted from when the agent received the
certificate (not from ``notBefore``, which the CA backdates by minutes: for a short-lived
certificate that would put the renewal in the past). A failed renewal is retried with
exponential backoff, capped so that several retries still fit before expiry.

Trust bundles are checked and digested here without ``cryptography``: the PEM blocks are
decoded (``certificate_ders``), OpenSSL (``ssl``, loaded anyway for TLS) parses them, and
``bundle_digest`` gives the same digest as ``gossamer.pki.certs.bundle_digest`` (the
control plane's) from the DER bytes alone.

Pure: no clock is read here (``now`` is passed in), no I/O.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import re
import ssl
from dataclasses import dataclass, field

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
    ``tls_certificate``. ``received_at`` anchors the renewal time; ``not_after`` and
    ``uris`` are read from the leaf by the child that checked it."""

    key: bytes = field(repr=False)  # PEM (PKCS#8); never in a log line
    chain_pem: bytes
    received_at: dt.datetime
    not_after: dt.datetime
    uris: tuple[str, ...] = ()

    def key_pem(self) -> bytes:
        return self.key

    def renew_at(self) -> dt.datetime:
        return renewal_time(self.received_at, self.not_after)


_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", re.S)


def certificate_ders(pem: bytes) -> list[bytes]:
    """The DER bytes of each certificate block in ``pem`` (``ValueError`` for a block
    that is not base64)."""
    ders = []
    for match in _PEM_CERT.finditer(pem):
        try:
            ders.append(base64.b64decode(b"".join(match.group(1).split()), validate=True))
        except binascii.Error:
            raise ValueError("a certificate block is not base64") from None
    return ders


def bundle_digest(pem: bytes) -> str:
    """``gossamer.pki.certs.bundle_digest`` without ``cryptography``: SHA-256 over the
    sorted SHA-256 fingerprints of the roots' DER ("" for an empty bundle)."""
    ders = certificate_ders(pem) if pem.strip() else []
    if not ders:
        return ""
    return hashlib.sha256(b"".join(sorted(hashlib.sha256(d).digest() for d in ders))
                          ).hexdigest()


def check_bundle(pem: bytes) -> int:
    """How many certificates the trust bundle holds, once OpenSSL has parsed every one
    (``ControlPlaneProtocolError`` if one does not parse or there are none)."""
    problem = "the control plane sent a trust bundle that does not parse"
    try:
        count = len(certificate_ders(pem))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(cadata=pem.decode("ascii"))
    except (ValueError, ssl.SSLError):  # UnicodeDecodeError is a ValueError
        raise ControlPlaneProtocolError(problem) from None
    if not count:
        raise ControlPlaneProtocolError(problem)
    return count


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
