"""The sidecar side of the zone CA: a mesh's trust bundle and its roots rolled out to the
zone's sidecars, and counted back.

``ZoneCa`` owns one ``Rollout`` and calls ``sync`` on every pass of its loop for each mesh
whose ``MeshTrust`` it knows. A pass:

* hands the mesh's bundle to the sidecars (``Sidecars.set_trust_bundle``, which pushes it
  to those that do not have it);
* sends it again to a sidecar that has reported another bundle for ``RESEND_AFTER``
  seconds (a push lost or refused), remembering in ``resent`` since when;
* once the zone's new certificates chain to one of the signer's roots, asks every sidecar
  whose certificate chains elsewhere to renew: at most ``RENEW_PER_PASS`` at a time, the
  rest ``RENEW_PACE`` seconds later (a big zone must not take its CA down with a burst of
  CSRs), and the same sidecar again only after ``RENEW_AGAIN`` seconds unless the signer
  changed.

``census`` counts what the sidecars serve for the zone's ``ZoneTrustStatus`` report. The
root a sidecar's certificate chains to is remembered per leaf and bundle, so recounting a
zone on each change does not check two signatures per sidecar each time.

Times are the running loop's clock (``asyncio.get_running_loop().time()``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from cryptography import x509

from gossamer.model.meshtrust import MeshTrustSpec
from gossamer.pki.certs import chain_root, fingerprint
from gossamer.pki.rotation import signer_id

log = logging.getLogger(__name__)

RENEW_AGAIN = 30.0      # seconds before a sidecar that was asked to renew is asked again
RENEW_PER_PASS = 100    # sidecars asked to renew at once; the rest a pass later
RENEW_PACE = 1.0        # seconds between such passes
RESEND_AFTER = 10.0     # seconds a sidecar may report another bundle before it is resent
ROOTS_SEEN_MAX = 100_000  # (leaf, bundle) -> root answers kept; cleared when full


class SidecarView(Protocol):
    """One connected sidecar as the CA needs it (``zone_cp.agent_session.AgentSession``)."""

    @property
    def node_id(self) -> str: ...

    @property
    def certificate_chain(self) -> Sequence[x509.Certificate]: ...

    @property
    def certificate_fingerprint(self) -> str: ...

    @property
    def trust_bundle_digest(self) -> str: ...


class Sidecars(Protocol):
    """The live sidecars of the zone (``zone_cp.trust_push.SidecarTrust``); ``changed``
    is set on every registration, report and departure."""

    changed: asyncio.Event

    def set_trust_bundle(self, mesh: str, pem: bytes) -> None: ...

    def resend_trust_bundle(self, mesh: str,
                            predicate: Callable[[SidecarView], bool]) -> int: ...

    def renew(self, mesh: str, predicate: Callable[[SidecarView], bool]) -> int: ...

    def sessions_of(self, mesh: str) -> Sequence[SidecarView]: ...


@dataclass(frozen=True)
class Census:
    """What the sidecars of one mesh serve, as the zone's report counts it."""

    dataplanes: int                 # sidecars connected now
    with_bundle: int                # of them, those that serve the current bundle
    certificates: dict[str, int]    # root fingerprint, "pending" or "unknown" -> sidecars


def bundle_roots(trust: MeshTrustSpec) -> list[x509.Certificate]:
    """The roots of the mesh's trust bundle."""
    pem = trust.trust_bundle
    return x509.load_pem_x509_certificates(pem.encode()) if pem.strip() else []


class Rollout:
    """The bundle and renewals of the zone's sidecars (``sidecars``: None when the zone
    serves none, as in tests of the CA alone; then every pass does nothing)."""

    def __init__(self, zone: str, sidecars: Sidecars | None) -> None:
        self._zone = zone
        self.sidecars = sidecars
        # node id -> (the signer it was asked to renew onto, when), so one rotation asks
        # a sidecar once per RENEW_AGAIN and a new rotation asks again at once.
        self._renewed: dict[str, tuple[str, float]] = {}
        # node id -> (the bundle digest pushed to it, when it was pushed or first seen
        # reporting another): a sidecar still reporting another after RESEND_AFTER is sent
        # the bundle again. Only sidecars that report another bundle are here.
        self.resent: dict[str, tuple[str, float]] = {}
        self._roots_seen: dict[tuple[str, str], str] = {}

    def sessions_of(self, mesh: str) -> list[SidecarView]:
        """The sidecars of ``mesh`` connected now."""
        return list(self.sidecars.sessions_of(mesh)) if self.sidecars is not None else []

    def forget_departed(self, meshes: Sequence[str]) -> None:
        """Forget the renewals and resends of sidecars no longer connected to any of
        ``meshes``."""
        if self.sidecars is None:
            return
        live = {s.node_id for mesh in meshes for s in self.sidecars.sessions_of(mesh)}
        self._renewed = {n: v for n, v in self._renewed.items() if n in live}
        self.resent = {n: v for n, v in self.resent.items() if n in live}

    def sync(self, mesh: str, trust: MeshTrustSpec, issuing_root: str) -> float | None:
        """Hand the bundle to every sidecar; when ``issuing_root`` (the root the zone's new
        certificates chain to) is the signer's, ask those on other roots to renew, at
        most ``RENEW_PER_PASS`` at a time. Returns in how many seconds to look again,
        None if nothing waits."""
        if self.sidecars is None:
            return None
        self.sidecars.set_trust_bundle(mesh, trust.trust_bundle.encode())
        missing = RESEND_AFTER if self._resend_bundle(mesh, trust) else None
        if issuing_root not in trust.signer.fingerprints:
            return missing  # re-issuing now would only give the same old root again
        behind, held_back = self._ask_to_renew(mesh, trust)
        if held_back:
            return RENEW_PACE
        waits = [d for d in (missing, RENEW_AGAIN if behind else None) if d is not None]
        return min(waits) if waits else None

    def _ask_to_renew(self, mesh: str, trust: MeshTrustSpec) -> tuple[int, int]:
        """Ask the sidecars whose certificates chain to another root than the signer's
        to renew; returns how many are behind and how many were held back for a pass
        later."""
        assert self.sidecars is not None
        signer_roots = set(trust.signer.fingerprints)
        target = signer_id(trust.signer)
        roots = bundle_roots(trust)
        loop_now = asyncio.get_running_loop().time()
        behind = held_back = asking = 0

        def stale(sidecar: SidecarView) -> bool:
            nonlocal behind, held_back, asking
            if not sidecar.certificate_fingerprint:
                return False
            if self.root_of(sidecar, trust, roots) in signer_roots:
                return False
            behind += 1
            asked = self._renewed.get(sidecar.node_id)
            if asked is not None and asked[0] == target and loop_now - asked[1] < RENEW_AGAIN:
                return False
            if asking >= RENEW_PER_PASS:
                held_back += 1
                return False  # the next pass asks it
            asking += 1
            self._renewed[sidecar.node_id] = (target, loop_now)
            return True

        asked = self.sidecars.renew(mesh, stale)
        if asked:
            log.info("zone %s: asked %d sidecars of mesh %s to renew onto %s%s", self._zone,
                     asked, mesh, target, f" ({held_back} more next)" if held_back else "")
        return behind, held_back

    def _resend_bundle(self, mesh: str, trust: MeshTrustSpec) -> bool:
        """Send the bundle again to sidecars that have reported another one for
        ``RESEND_AFTER`` seconds (a push lost or refused). True while any differs."""
        assert self.sidecars is not None
        loop_now = asyncio.get_running_loop().time()
        differs = False

        def behind(sidecar: SidecarView) -> bool:
            nonlocal differs
            if not sidecar.trust_bundle_digest or (
                    sidecar.trust_bundle_digest == trust.bundle_digest):
                self.resent.pop(sidecar.node_id, None)
                return False
            differs = True
            seen = self.resent.get(sidecar.node_id)
            if seen is None or seen[0] != trust.bundle_digest:
                self.resent[sidecar.node_id] = (trust.bundle_digest, loop_now)
                return False  # just pushed: give it time to report
            if loop_now - seen[1] < RESEND_AFTER:
                return False
            self.resent[sidecar.node_id] = (trust.bundle_digest, loop_now)
            return True

        sent = self.sidecars.resend_trust_bundle(mesh, behind)
        if sent:
            log.info("zone %s: sent the bundle of mesh %s again to %d sidecars that report "
                     "another", self._zone, mesh, sent)
        return differs

    def root_of(self, sidecar: SidecarView, trust: MeshTrustSpec,
                roots: Sequence[x509.Certificate]) -> str:
        """The fingerprint of the bundle root ``sidecar``'s certificate chain leads to,
        or "unknown". Remembered per leaf and bundle: a zone recounts every sidecar on
        each change, and would otherwise parse its chain and check two signatures per
        sidecar each time."""
        key = (sidecar.certificate_fingerprint, trust.bundle_digest)
        found = self._roots_seen.get(key)
        if found is None:
            root = chain_root(sidecar.certificate_chain, roots)
            found = fingerprint(root) if root is not None else "unknown"
            if len(self._roots_seen) >= ROOTS_SEEN_MAX:
                self._roots_seen.clear()
            self._roots_seen[key] = found
        return found

    def census(self, mesh: str, trust: MeshTrustSpec | None) -> Census:
        """Count the sidecars of ``mesh``: how many serve ``trust``'s bundle, and per
        certificate the root it chains to ("pending" before the first certificate,
        "unknown" while the mesh's trust is not known)."""
        sidecars = self.sessions_of(mesh)
        digest = trust.bundle_digest if trust is not None else ""
        roots = bundle_roots(trust) if trust is not None else []
        counts: dict[str, int] = {}
        for sidecar in sidecars:
            if not sidecar.certificate_fingerprint:
                key = "pending"
            elif trust is None:
                key = "unknown"
            else:
                key = self.root_of(sidecar, trust, roots)
            counts[key] = counts.get(key, 0) + 1
        with_bundle = sum(1 for s in sidecars if digest and s.trust_bundle_digest == digest)
        return Census(dataplanes=len(sidecars), with_bundle=with_bundle, certificates=counts)
