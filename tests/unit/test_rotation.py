"""The CA rotation state machine: every phase change and every reason to wait."""

from __future__ import annotations

import datetime as dt

from cryptography import x509

from gossamer.model.meshtrust import TrustPhase
from gossamer.model.zonetrust import ZoneTrustStatusSpec
from gossamer.pki.certs import bundle_digest, fingerprint, new_root_ca
from gossamer.pki.rotation import Wanted, advance, identity, same_ca, trust_of

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)


def _root(name: str) -> x509.Certificate:
    return new_root_ca(name, NOW, dt.timedelta(days=30)).cert


OLD, NEW = _root("old"), _root("new")
A = identity("builtin-1", "builtin", 0, [OLD])
B = identity("vault-1", "vault", 0, [NEW])


def zone(name: str, digest: str, dataplanes: int = 2, with_bundle: int = 2,
         certs: dict[str, int] | None = None, intermediate: str = "") -> ZoneTrustStatusSpec:
    return ZoneTrustStatusSpec(zone=name, mesh="default", bundle_digest=digest,
                               dataplanes=dataplanes, dataplanes_with_bundle=with_bundle,
                               certificates=certs or {}, intermediate_root=intermediate)


def test_first_trust_is_stable_on_the_wanted_ca() -> None:
    step = advance(None, Wanted(A), [], NOW)
    assert step is not None
    assert step.trust.phase is TrustPhase.STABLE
    assert step.trust.signer == A
    assert bundle_digest(step.trust.trust_bundle.encode()) == step.trust.bundle_digest
    assert [fingerprint(c) for c in x509.load_pem_x509_certificates(
        step.trust.trust_bundle.encode())] == [fingerprint(OLD)]


def test_no_trust_without_a_usable_ca() -> None:
    assert advance(None, Wanted(None, "vault-1 does not answer"), [], NOW) is None


def test_stable_stays_while_the_same_ca_is_wanted() -> None:
    current = trust_of(TrustPhase.STABLE, A, NOW)
    step = advance(current, Wanted(A), [], NOW)
    assert step is not None and step.trust == current


def test_unusable_new_ca_keeps_the_old_one_and_says_why() -> None:
    current = trust_of(TrustPhase.STABLE, A, NOW)
    step = advance(current, Wanted(None, "vault-1: Vault at https://x does not answer"), [],
                   NOW)
    assert step is not None
    assert step.trust.phase is TrustPhase.STABLE and same_ca(step.trust.signer, A)
    assert "does not answer" in step.trust.message


def test_a_new_ca_is_trusted_before_it_signs() -> None:
    current = trust_of(TrustPhase.STABLE, A, NOW)
    step = advance(current, Wanted(B), [], NOW)
    assert step is not None
    t = step.trust
    assert t.phase is TrustPhase.ADDING_TRUST
    assert t.signer == A and t.incoming == B
    roots = {fingerprint(c) for c in x509.load_pem_x509_certificates(t.trust_bundle.encode())}
    assert roots == {fingerprint(OLD), fingerprint(NEW)}


def test_adding_trust_waits_for_every_sidecar_in_every_zone() -> None:
    adding = trust_of(TrustPhase.ADDING_TRUST, A, NOW, incoming=B)
    zones = [zone("east", adding.bundle_digest), zone("west", adding.bundle_digest,
                                                       with_bundle=1)]
    step = advance(adding, Wanted(B), zones, NOW)
    assert step is not None
    assert step.trust.phase is TrustPhase.ADDING_TRUST
    assert step.waiting_on == ("west (1/2 sidecars)",)
    assert "west (1/2 sidecars)" in step.trust.message
    stale = [zone("east", "0" * 64)]
    step = advance(adding, Wanted(B), stale, NOW)
    assert step is not None and step.trust.phase is TrustPhase.ADDING_TRUST


def test_once_every_sidecar_trusts_both_the_new_ca_signs() -> None:
    adding = trust_of(TrustPhase.ADDING_TRUST, A, NOW, incoming=B)
    zones = [zone("east", adding.bundle_digest), zone("west", adding.bundle_digest)]
    step = advance(adding, Wanted(B), zones, NOW)
    assert step is not None
    t = step.trust
    assert t.phase is TrustPhase.REISSUING
    assert t.signer == B and t.retiring == A and t.incoming is None
    assert t.bundle_digest == adding.bundle_digest  # still both roots


def test_switching_back_during_adding_trust_returns_to_stable() -> None:
    adding = trust_of(TrustPhase.ADDING_TRUST, A, NOW, incoming=B)
    step = advance(adding, Wanted(A), [], NOW)
    assert step is not None
    assert step.trust.phase is TrustPhase.STABLE and step.trust.signer == A
    assert step.retired is None


def test_a_third_ca_during_adding_trust_replaces_the_incoming_one() -> None:
    third = identity("files", "provided", 0, [_root("third")])
    adding = trust_of(TrustPhase.ADDING_TRUST, A, NOW, incoming=B)
    step = advance(adding, Wanted(third), [], NOW)
    assert step is not None
    assert step.trust.phase is TrustPhase.ADDING_TRUST and step.trust.incoming == third
    assert step.trust.bundle_digest != adding.bundle_digest


def test_reissuing_waits_for_intermediates_and_certificates_on_the_new_roots() -> None:
    reissuing = trust_of(TrustPhase.REISSUING, B, NOW, retiring=A)
    new, old = fingerprint(NEW), fingerprint(OLD)
    digest = reissuing.bundle_digest
    cases = [
        zone("east", digest, certs={new: 1, old: 1}, intermediate=new),
        zone("east", digest, certs={new: 2}, intermediate=old),
        zone("east", digest, certs={new: 1, "pending": 1}, intermediate=new),
        zone("east", "f" * 64, certs={new: 2}, intermediate=new),
    ]
    for case in cases:
        step = advance(reissuing, Wanted(B), [case], NOW)
        assert step is not None
        assert step.trust.phase is TrustPhase.REISSUING, case
        assert step.waiting_on


def test_reissuing_ends_with_the_old_roots_dropped() -> None:
    reissuing = trust_of(TrustPhase.REISSUING, B, NOW, retiring=A)
    new = fingerprint(NEW)
    done = [zone("east", reissuing.bundle_digest, certs={new: 2, fingerprint(OLD): 0},
                 intermediate=new),
            zone("west", reissuing.bundle_digest, dataplanes=0, with_bundle=0,
                 intermediate=new)]
    step = advance(reissuing, Wanted(B), done, NOW)
    assert step is not None
    t = step.trust
    assert t.phase is TrustPhase.STABLE and t.signer == B and t.retiring is None
    assert step.retired == A
    assert [fingerprint(c) for c in x509.load_pem_x509_certificates(
        t.trust_bundle.encode())] == [new]


def test_issue_mode_needs_no_intermediate() -> None:
    issuing = identity("vault-1", "vault", 0, [NEW], issues_workloads=True)
    reissuing = trust_of(TrustPhase.REISSUING, issuing, NOW, retiring=A)
    step = advance(reissuing, Wanted(issuing), [
        zone("east", reissuing.bundle_digest, certs={fingerprint(NEW): 2})], NOW)
    assert step is not None and step.trust.phase is TrustPhase.STABLE


def test_a_change_during_reissuing_waits_for_the_rotation_to_finish() -> None:
    reissuing = trust_of(TrustPhase.REISSUING, B, NOW, retiring=A)
    behind = zone("east", reissuing.bundle_digest, certs={fingerprint(OLD): 1},
                  intermediate=fingerprint(NEW))
    step = advance(reissuing, Wanted(A), [behind], NOW)
    assert step is not None
    assert step.trust.phase is TrustPhase.REISSUING and step.trust.signer == B


def test_a_regenerated_builtin_root_is_another_ca() -> None:
    regenerated = identity("builtin-1", "builtin", 1, [NEW])
    assert not same_ca(A, regenerated)
    step = advance(trust_of(TrustPhase.STABLE, A, NOW), Wanted(regenerated), [], NOW)
    assert step is not None and step.trust.phase is TrustPhase.ADDING_TRUST
