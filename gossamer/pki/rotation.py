"""The CA rotation of a mesh as a pure state machine (``MeshTrust``, DESIGN §5).

``advance`` takes what is stored (the mesh's ``MeshTrust``), the CA the Mesh asks for now
(``Wanted``: the enabled backend with its roots, or why it cannot be used), and what every
zone reports (``ZoneTrustStatus``), and returns the next ``MeshTrust``. The control plane
that owns the roots calls it whenever any of them changes and stores the result; nothing
else is remembered, so a restart resumes from the stored phase.

    stable ──(another CA wanted, and it works)──▶ adding-trust
    adding-trust ──(every zone: every sidecar serves the bundle of both)──▶ reissuing
    adding-trust ──(the old CA wanted again)──▶ stable (nobody holds a new certificate yet)
    reissuing ──(every zone: intermediate and every certificate on the new roots)──▶ stable

A rotation in ``reissuing`` always finishes before another one starts: certificates from
the new CA are already out, so going back is a new rotation.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from gossamer.model.meshtrust import CaIdentity, MeshTrustSpec, TrustPhase
from gossamer.model.zonetrust import ZoneTrustStatusSpec
from gossamer.pki.certs import bundle_digest, bundle_pem, fingerprint


@dataclass(frozen=True)
class Wanted:
    """The CA the Mesh's ``enabledBackend`` asks for: its identity, or why it is unusable
    (``identity`` None and ``error`` set: the current CA stays)."""

    identity: CaIdentity | None
    error: str = ""


@dataclass(frozen=True)
class Step:
    """The next state, and the CA (if any) that has just left the bundle for good."""

    trust: MeshTrustSpec
    retired: CaIdentity | None = None
    waiting_on: tuple[str, ...] = field(default_factory=tuple)


def identity(backend: str, kind: str, generation: int, roots: Sequence[x509.Certificate],
             issues_workloads: bool = False) -> CaIdentity:
    ordered = sorted(roots, key=fingerprint)
    return CaIdentity(backend=backend, type=kind, generation=generation,
                      roots=[c.public_bytes(Encoding.PEM).decode() for c in ordered],
                      fingerprints=[fingerprint(c) for c in ordered],
                      issues_workloads=issues_workloads)


def same_ca(a: CaIdentity, b: CaIdentity) -> bool:
    """The same CA for trust purposes: same backend, generation and roots."""
    return (a.backend, a.generation, sorted(a.fingerprints)) == (
        b.backend, b.generation, sorted(b.fingerprints))


def signer_id(ca: CaIdentity) -> str:
    return f"{ca.backend}/{ca.generation}"


def _bundle(*cas: CaIdentity) -> tuple[str, str]:
    certs = [x509.load_pem_x509_certificate(p.encode()) for ca in cas for p in ca.roots]
    pem = bundle_pem(certs)
    return pem.decode(), bundle_digest(pem)


def trust_of(phase: TrustPhase, signer: CaIdentity, now: dt.datetime, *,
             incoming: CaIdentity | None = None, retiring: CaIdentity | None = None,
             generations: dict[str, int] | None = None, message: str = "") -> MeshTrustSpec:
    bundle, digest = _bundle(*(ca for ca in (signer, incoming, retiring) if ca is not None))
    return MeshTrustSpec(phase=phase, signer=signer, incoming=incoming, retiring=retiring,
                         trust_bundle=bundle, bundle_digest=digest,
                         since=now.isoformat(timespec="seconds"), message=message,
                         generations=dict(generations or {}))


def _has_bundle(z: ZoneTrustStatusSpec, digest: str) -> bool:
    return z.bundle_digest == digest and z.dataplanes_with_bundle >= z.dataplanes


def _on_roots(z: ZoneTrustStatusSpec, signer: CaIdentity) -> bool:
    held = {root for root, count in z.certificates.items() if count > 0}
    if not held <= set(signer.fingerprints):
        return False
    return signer.issues_workloads or z.intermediate_root in signer.fingerprints


def _progress(z: ZoneTrustStatusSpec) -> str:
    return f"{z.zone} ({z.dataplanes_with_bundle}/{z.dataplanes} sidecars)"


def advance(current: MeshTrustSpec | None, wanted: Wanted,
            zones: Sequence[ZoneTrustStatusSpec], now: dt.datetime) -> Step | None:
    """The next MeshTrust (``None``: there is none and no usable CA to start with)."""
    if current is None:
        if wanted.identity is None:
            return None
        return Step(trust_of(TrustPhase.STABLE, wanted.identity, now))
    want, problem = wanted.identity, wanted.error
    gen = current.generations
    if current.phase is TrustPhase.STABLE:
        if want is None or same_ca(want, current.signer):
            signer = want if want is not None else current.signer
            return _keep(current, problem, signer=signer)
        return Step(trust_of(TrustPhase.ADDING_TRUST, current.signer, now, incoming=want,
                             generations=gen))
    if current.phase is TrustPhase.ADDING_TRUST:
        assert current.incoming is not None
        if want is not None and same_ca(want, current.signer):
            return Step(trust_of(TrustPhase.STABLE, current.signer, now,
                                 generations=gen))
        if want is not None and not same_ca(want, current.incoming):
            return Step(trust_of(TrustPhase.ADDING_TRUST, current.signer, now, incoming=want,
                                 generations=gen))
        behind = [z for z in zones if not _has_bundle(z, current.bundle_digest)]
        if behind:
            waiting = tuple(_progress(z) for z in behind)
            return _keep(current, _join(problem, "waiting for every sidecar to trust both "
                                                 "CAs: " + ", ".join(waiting)), waiting)
        return Step(trust_of(TrustPhase.REISSUING, current.incoming, now,
                             retiring=current.signer, generations=gen))
    assert current.retiring is not None
    behind = [z for z in zones if not (_has_bundle(z, current.bundle_digest)
                                       and _on_roots(z, current.signer))]
    if behind:
        waiting = tuple(_certs_progress(z, current.signer) for z in behind)
        return _keep(current, _join(problem, "re-issuing certificates from "
                                             f"{signer_id(current.signer)}: "
                                             + ", ".join(waiting)), waiting)
    return Step(trust_of(TrustPhase.STABLE, current.signer, now,
                         generations=_past(gen, current.retiring, current.signer)),
                retired=current.retiring)


def _past(generations: dict[str, int], retired: CaIdentity,
          signer: CaIdentity) -> dict[str, int]:
    """The generations wanted once ``retired`` is gone: a retired builtin root's key is
    deleted, so its backend's next use makes a new root under a new generation."""
    if retired.type != "builtin" or (retired.backend, retired.generation) == (
            signer.backend, signer.generation):
        return generations
    return {**generations, retired.backend: max(generations.get(retired.backend, 0),
                                                 retired.generation + 1)}


def _certs_progress(z: ZoneTrustStatusSpec, signer: CaIdentity) -> str:
    old = sum(n for root, n in z.certificates.items() if root not in signer.fingerprints)
    where = "" if signer.issues_workloads or z.intermediate_root in signer.fingerprints else (
        ", intermediate not yet re-issued")
    return f"{z.zone} ({old} certificates not on the new roots{where})"


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def _keep(current: MeshTrustSpec, message: str, waiting: tuple[str, ...] = (), *,
          signer: CaIdentity | None = None) -> Step:
    """The same phase; only the message (or a signer detail that is not about trust, such
    as the mode of the same Vault) may change."""
    update: dict[str, object] = {"message": message[:4096]}
    if signer is not None:
        update["signer"] = signer
    return Step(current.model_copy(update=update), waiting_on=waiting)
