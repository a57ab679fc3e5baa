"""What a sidecar reports about its certificate, parsed and judged, without I/O.

An agent sends ``AgentStatus`` (its certificate chain, and the digest of the trust bundle
Envoy serves) after registering, after each new certificate and after each new trust
bundle. ``parse_status`` turns those bytes into a ``StatusReport`` or raises
``InvalidStatus`` (the agent's fault: the zone CP logs it and keeps the stream): a chain
larger than ``MAX_CHAIN_PEM`` or with more than ``MAX_CHAIN_CERTS`` certificates, one
that does not parse, a digest that is not lowercase SHA-256 hex.

``CertificateInfo`` is what the insights show (serial in hex, issuer in RFC 4514, the
validity period, the URI SANs) and the leaf's SHA-256 fingerprint, as small values: a
zone CP keeps one or two per connected sidecar, and a parsed ``x509.Certificate`` chain
with its extensions cost about 3 KiB each. The chain itself is kept as DER (the CA
certificates above the leaf, the same for every sidecar of a zone, interned: one copy
for all) and parsed again only when asked (``chain``), so whoever needs to know which
root it leads to can ask ``gossamer.pki.certs.chain_root`` (``zone_cp.rollout`` does
once per leaf and bundle).

``health`` says whether a certificate is ``valid``, ``expiring`` (past the time its agent
should have renewed it: two thirds of its lifetime, plus a grace for the renewal round
trip) or ``expired``. The lifetime is counted as the agent counts it, from when it was
issued: the zone CP knows that for what it signed itself; otherwise it is estimated as
``notBefore`` plus the backdating the CAs apply (``gossamer.pki.certs.BACKDATE``), since
counting from a backdated ``notBefore`` would call every short-lived certificate overdue.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
import sys
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from gossamer.pki.certs import BACKDATE, fingerprint, uri_sans

MAX_CHAIN_PEM = 32 * 1024
MAX_CHAIN_CERTS = 8
RENEW_AT = 2 / 3
RENEWAL_GRACE = dt.timedelta(seconds=60)
_DIGEST = re.compile(r"^([0-9a-f]{64})?$")
# The CA certificates above the leaves (DER), one copy for every chain that holds one:
# a zone's sidecars share its intermediate. Bounded, in case CAs churn.
_CAS: dict[bytes, bytes] = {}
_CAS_MAX = 1024


def _interned(der: bytes) -> bytes:
    held = _CAS.get(der)
    if held is None:
        if len(_CAS) >= _CAS_MAX:
            _CAS.clear()
        held = _CAS[der] = der
    return held


class InvalidStatus(ValueError):
    """An agent's status that cannot be recorded (the agent's fault; retrying the same
    bytes cannot help)."""

    caller_fault = True
    retryable = False


class Health(enum.StrEnum):
    VALID = "valid"
    EXPIRING = "expiring"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    """A workload certificate as the insights show it, its leaf's ``fingerprint``, and
    its chain as DER (``chain_der``, leaf first)."""

    serial: str
    issuer: str
    not_before: dt.datetime
    not_after: dt.datetime
    uris: tuple[str, ...]
    fingerprint: str
    chain_der: tuple[bytes, ...]

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        """The chain, leaf first, parsed anew on each call."""
        return tuple(x509.load_der_x509_certificate(der) for der in self.chain_der)

    @classmethod
    def from_chain_pem(cls, pem: bytes) -> CertificateInfo:
        if len(pem) > MAX_CHAIN_PEM:
            raise InvalidStatus(f"the certificate chain is {len(pem)} bytes, more than "
                                f"{MAX_CHAIN_PEM}")
        if pem.count(b"-----BEGIN") > MAX_CHAIN_CERTS:
            raise InvalidStatus(f"the certificate chain has more than {MAX_CHAIN_CERTS} "
                                "certificates")
        try:
            chain = x509.load_pem_x509_certificates(pem)
            leaf = chain[0]
            uris = tuple(uri_sans(leaf))
            issuer = leaf.issuer.rfc4514_string()
        except (ValueError, KeyError, TypeError, UnicodeError) as exc:
            # cryptography raises ValueError for most malformed input, but a name with a
            # mangled attribute type fails in formatting with a KeyError.
            raise InvalidStatus(f"the certificate chain does not parse: {exc!r}") from None
        ders = [c.public_bytes(Encoding.DER) for c in chain]
        return cls(serial=format(leaf.serial_number, "x"), issuer=sys.intern(issuer),
                   not_before=leaf.not_valid_before_utc, not_after=leaf.not_valid_after_utc,
                   uris=tuple(sys.intern(u) for u in uris), fingerprint=fingerprint(leaf),
                   chain_der=(ders[0], *map(_interned, ders[1:])))

    def estimated_issue(self) -> dt.datetime:
        """When it was probably issued, for a certificate the zone CP did not sign."""
        lifetime = self.not_after - self.not_before
        return self.not_before + min(BACKDATE, lifetime * 0.9)

    def renewal_due(self, issued_at: dt.datetime | None = None) -> dt.datetime:
        """By when its agent should have replaced it."""
        start = issued_at or self.estimated_issue()
        left = self.not_after - start
        return start + left * RENEW_AT + min(RENEWAL_GRACE, left / 10)

    def health(self, now: dt.datetime, issued_at: dt.datetime | None = None) -> Health:
        if now >= self.not_after:
            return Health.EXPIRED
        if now >= self.renewal_due(issued_at):
            return Health.EXPIRING
        return Health.VALID

    def to_json(self, now: dt.datetime) -> dict[str, Any]:
        return {"serial": self.serial, "issuer": self.issuer,
                "notBefore": self.not_before.isoformat(),
                "notAfter": self.not_after.isoformat(),
                "expiresInSeconds": int((self.not_after - now).total_seconds()),
                "uris": list(self.uris)}


@dataclass(frozen=True, slots=True)
class StatusReport:
    """One ``AgentStatus``, parsed, with when it arrived."""

    certificate: CertificateInfo
    trust_bundle_digest: str
    reported_at: dt.datetime


@dataclass(frozen=True, slots=True)
class SignedRecord:
    """A certificate the zone CP signed for a sidecar, and when."""

    certificate: CertificateInfo
    signed_at: dt.datetime


def parse_status(chain_pem: bytes, trust_bundle_digest: str,
                 now: dt.datetime) -> StatusReport:
    if not _DIGEST.match(trust_bundle_digest):
        raise InvalidStatus("the trust bundle digest is not a SHA-256 in lowercase hex")
    return StatusReport(CertificateInfo.from_chain_pem(chain_pem),
                        sys.intern(trust_bundle_digest), now)
