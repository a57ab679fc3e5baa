"""What the zone CP makes of a sidecar's status: parsing (bounded, never a stray
exception) and whether a certificate is valid, due for renewal, or expired."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given, settings
from hypothesis import strategies as st

from gossamer.pki.certs import BACKDATE, KeyPair, new_leaf, new_root_ca
from zone_cp.cert_status import (
    MAX_CHAIN_PEM,
    CertificateInfo,
    Health,
    InvalidStatus,
    parse_status,
)

T0 = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)
DIGEST = "ab" * 32
ROOT = new_root_ca("mesh root", T0 - HOUR, dt.timedelta(days=365))


def leaf(valid_for: dt.timedelta, now: dt.datetime = T0) -> KeyPair:
    return new_leaf(ROOT, "backend-1", now, valid_for, uris=["spiffe://default/backend"])


def chain(pair: KeyPair) -> bytes:
    return pair.cert_pem() + ROOT.cert_pem()


def test_a_chain_is_parsed_into_what_the_insights_show() -> None:
    pair = leaf(24 * HOUR)
    report = parse_status(chain(pair), DIGEST, T0)
    cert = report.certificate
    assert cert.serial == format(pair.cert.serial_number, "x")
    assert cert.issuer == "CN=mesh root,O=Gossamer"
    assert cert.uris == ("spiffe://default/backend",)
    assert cert.not_after == T0 + 24 * HOUR
    assert cert.not_before == T0 - BACKDATE
    assert [c.public_bytes(Encoding.PEM) for c in cert.chain] == [
        pair.cert_pem(), ROOT.cert_pem()]
    assert report.trust_bundle_digest == DIGEST and report.reported_at == T0
    assert cert.to_json(T0 + HOUR)["expiresInSeconds"] == 23 * 3600


@pytest.mark.parametrize(("pem", "digest", "error"), [
    (b"", DIGEST, "does not parse"),
    (b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n", DIGEST,
     "does not parse"),
    (b"x" * (MAX_CHAIN_PEM + 1), DIGEST, "more than"),
    (chain(leaf(HOUR)) * 5, DIGEST, "more than 8 certificates"),
    (chain(leaf(HOUR)), "AB" * 32, "digest"),
    (chain(leaf(HOUR)), "abc", "digest"),
])
def test_bad_reports_are_the_agents_fault(pem: bytes, digest: str, error: str) -> None:
    with pytest.raises(InvalidStatus, match=error):
        parse_status(pem, digest, T0)


def test_an_empty_digest_is_a_sidecar_without_a_bundle_yet() -> None:
    assert parse_status(chain(leaf(HOUR)), "", T0).trust_bundle_digest == ""


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=4096), st.text(max_size=80))
def test_any_input_parses_or_is_refused(pem: bytes, digest: str) -> None:
    parses_or_is_refused(pem, digest)


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=1200), st.integers(min_value=0, max_value=255))
def test_one_byte_changed_in_a_good_chain_parses_or_is_refused(at: int, value: int) -> None:
    good = bytearray(chain(leaf(HOUR)))
    good[at % len(good)] = value
    parses_or_is_refused(bytes(good), DIGEST)


def parses_or_is_refused(pem: bytes, digest: str) -> None:
    """The invariant: a report, whole and consistent, or ``InvalidStatus``; anything else
    (a ``TypeError``, an ``IndexError``...) fails the test."""
    try:
        report = parse_status(pem, digest, T0)
    except InvalidStatus:
        return
    cert = report.certificate
    assert cert.chain and int(cert.serial, 16) == cert.chain[0].serial_number
    assert len(pem) <= MAX_CHAIN_PEM and report.trust_bundle_digest == digest


def test_health_counts_the_lifetime_from_issue_not_the_backdated_not_before() -> None:
    cert = CertificateInfo.from_chain_pem(chain(leaf(24 * HOUR)))
    # Renewal is due at two thirds (16 h after issue) plus a minute of grace.
    assert cert.health(T0 + 16 * HOUR) == Health.VALID
    assert cert.health(T0 + 16 * HOUR + dt.timedelta(seconds=61)) == Health.EXPIRING
    assert cert.health(T0 + 24 * HOUR) == Health.EXPIRED
    # Known issue time (the zone CP signed it) wins over the estimate.
    late = T0 + 3 * HOUR
    assert cert.health(T0 + 17 * HOUR, issued_at=late) == Health.VALID
    assert cert.health(T0 + 18 * HOUR, issued_at=late) == Health.EXPIRING


def test_a_short_lived_certificate_is_not_due_when_it_is_issued() -> None:
    # Backdated by 5 minutes, a 30 s certificate looks 5.5 minutes long from notBefore:
    # counting from there would call it overdue from birth.
    cert = CertificateInfo.from_chain_pem(chain(leaf(dt.timedelta(seconds=30))))
    assert cert.health(T0) == Health.VALID
    assert cert.health(T0 + dt.timedelta(seconds=18)) == Health.VALID
    assert cert.health(T0 + dt.timedelta(seconds=25)) == Health.EXPIRING
