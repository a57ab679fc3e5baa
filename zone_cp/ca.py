"""The zone's certificate authority per mesh: workload certificates, bundles, rotation.

The mesh's ``MeshTrust`` (from the global, or from this zone's own controller when it is
standalone) says which CA signs and which roots every sidecar must trust. The zone:

* keeps an intermediate CA per mesh (``zone_cp.intermediates``: its own key, a CSR to the
  owner of the roots, the ``ZoneCertificate`` that comes back) and signs workloads with
  it. When the mesh's CA issues workload certificates
  itself (Vault in ``issue`` mode) the zone forwards each CSR to it instead, and holds no
  mesh key at all;
* hands the trust bundle to every sidecar of the mesh and, once its own issuer is on the
  signer's roots, asks every sidecar whose certificate chains elsewhere to renew;
* reports what it sees (``ZoneTrustStatus``): how many sidecars serve the current bundle,
  which roots their certificates chain to, its intermediate's root, and why it cannot
  issue, if it cannot. The rotation advances on these reports.

Workload identities are decided from the sidecar's dataplane token, never from the
Dataplane or the CSR: ``spiffe://<mesh>/<service>`` for the token's service and
``gossamer://<tag>/<value>`` per tag the token binds (``workload_uris``). Until the
first intermediate arrives, signing raises ``CaUnavailable`` and agents retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from prometheus_client import CollectorRegistry, Counter, Gauge

from gossamer.errors import GossamerError, NotFound
from gossamer.model.base import Resource
from gossamer.model.fields import duration_seconds
from gossamer.model.labels import SERVICE_TAG
from gossamer.model.mesh import BackendType, CaBackend, MeshSpec
from gossamer.model.meshtrust import CaIdentity, MeshTrustSpec
from gossamer.model.zonecertificate import ZoneCertificateSpec
from gossamer.model.zonetrust import ZoneTrustStatusSpec
from gossamer.pki.backends import provider_for
from gossamer.pki.backends.base import CaBackendError
from gossamer.pki.certs import (
    chain_root,
    fingerprint,
    sign_leaf,
)
from gossamer.pki.rotation import signer_id
from gossamer.resources import ResourceManager
from gossamer.store.follow import follow
from proxy.context import spiffe, tag_uri
from zone_cp.intermediates import Intermediates, Issuer
from zone_cp.leftovers import LEFTOVER_GRACE

log = logging.getLogger(__name__)

DEFAULT_WORKLOAD_LIFETIME = dt.timedelta(hours=24)
RENEW_AGAIN = 30.0      # seconds before a sidecar that was asked to renew is asked again
REPORT_DEBOUNCE = 0.2   # seconds: sidecar events are gathered into one status report
WATCHED = ["Mesh", "MeshTrust", "ZoneCertificate", "Secret"]
RENEW_PER_PASS = 100    # sidecars asked to renew at once; the rest a pass later
RENEW_PACE = 1.0        # seconds between such passes
RESEND_AFTER = 10.0     # seconds a sidecar may report another bundle before it is resent
ROOTS_SEEN_MAX = 100_000  # (leaf, bundle) -> root answers kept; cleared when full


class CaUnavailable(GossamerError):
    http_status = 503
    grpc_status = "UNAVAILABLE"
    title = "certificate authority unavailable"
    retryable = True


@dataclass(frozen=True)
class Signed:
    chain_pem: bytes
    trust_bundle_pem: bytes
    not_after: dt.datetime


class SidecarView(Protocol):
    """One connected sidecar as the CA needs it (``zone_cp.agent_session.AgentSession``)."""

    @property
    def node_id(self) -> str: ...

    @property
    def certificate_chain(self) -> Sequence[x509.Certificate]: ...

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


def workload_uris(mesh: str, service: str, tags: Mapping[str, str] | None = None
                  ) -> list[str]:
    """The URI SANs of a workload certificate: the service and the tags the sidecar's
    dataplane token vouches for (its claims, ``zone_cp.admission``), never what the
    Dataplane or the CSR says."""
    uris = {spiffe(mesh, service)}
    uris |= {tag_uri(k, v) for k, v in (tags or {}).items() if k != SERVICE_TAG}
    return sorted(uris)


def workload_lifetime(mesh: MeshSpec) -> dt.timedelta:
    backend = mesh.mtls.enabled() if mesh.mtls else None
    if backend is None:
        return DEFAULT_WORKLOAD_LIFETIME
    return dt.timedelta(seconds=duration_seconds(backend.dp_cert.rotation.expiration))



def _certs(pem: str) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem.encode()) if pem.strip() else []


def _roots(trust: MeshTrustSpec) -> list[x509.Certificate]:
    return _certs(trust.trust_bundle)


class ZoneCa:
    def __init__(self, manager: ResourceManager, zone: str, sidecars: Sidecars | None = None,
                 metrics: CollectorRegistry | None = None,
                 startup_grace: float = LEFTOVER_GRACE) -> None:
        """``startup_grace``: how long after a start the sidecars of the previous run may
        take to come back (the zone's ``agent_grace``): until then a report that would
        count fewer of them than the last one is held back."""
        self._manager = manager
        registry = metrics or CollectorRegistry()
        self._can_issue = Gauge("gossamer_zone_ca_can_issue", "1 if the zone could issue "
                                "workload certificates for the mesh at the last attempt",
                                ["mesh"], registry=registry)
        self._issue_failures = Counter("gossamer_zone_ca_issue_failures", "Workload "
                                       "certificates the zone could not issue", ["mesh"],
                                       registry=registry)
        self._zone = zone
        self._sidecars = sidecars
        self._trusts: dict[str, MeshTrustSpec] = {}
        self._intermediates = Intermediates(manager, zone)
        self._errors: dict[str, str] = {}
        # node id -> (the signer it was asked to renew onto, when), so one rotation asks
        # a sidecar once per RENEW_AGAIN and a new rotation asks again at once.
        self._renewed: dict[str, tuple[str, float]] = {}
        self._roots_seen: dict[tuple[str, str], str] = {}
        self._resent: dict[str, tuple[str, float]] = {}
        self._started = time.monotonic()
        self.startup_grace = startup_grace
        self.changed = asyncio.Event()

    # -- signing -------------------------------------------------------------------------

    def trust(self, mesh: str) -> MeshTrustSpec:
        trust = self._trusts.get(mesh)
        if trust is None:
            raise CaUnavailable(f"zone {self._zone} does not know the CA of mesh {mesh!r} "
                                "yet: it comes from the control plane that owns the roots")
        return trust

    def issuer(self, mesh: str) -> Issuer:
        """The zone's intermediate for ``mesh`` (``CaUnavailable`` until it has one)."""
        issuer = self._intermediates.installed.get(mesh)
        if issuer is None:
            raise CaUnavailable(f"zone {self._zone} has no intermediate CA for mesh {mesh!r} "
                                "yet: it is requested from the control plane that owns the "
                                "roots")
        return issuer

    async def trust_bundle(self, mesh: str) -> bytes:
        return self.trust(mesh).trust_bundle.encode()

    async def sign(self, mesh: str, uris: Sequence[str],
                   csr: x509.CertificateSigningRequest,
                   now: dt.datetime | None = None) -> Signed:
        """Sign ``csr`` with exactly ``uris`` (``workload_uris``) as its identity."""
        now = now or dt.datetime.now(dt.UTC)
        trust = self.trust(mesh)
        mesh_spec = await self._mesh(mesh)
        lifetime = workload_lifetime(mesh_spec)
        uris = list(uris)
        if trust.signer.issues_workloads:
            chain_pem, not_after = await self._sign_at_backend(mesh, mesh_spec, trust, csr,
                                                               uris, now, lifetime)
        else:
            try:
                issuer = self.issuer(mesh)
            except CaUnavailable:
                self._set_error(mesh, "no intermediate CA yet")
                raise
            cert = sign_leaf(issuer.ca, csr, now, lifetime, uris=uris, server=True,
                             client=True)
            chain_pem = cert.public_bytes(Encoding.PEM) + issuer.chain_pem
            not_after = cert.not_valid_after_utc
            self._set_error(mesh, "")
        return Signed(chain_pem=chain_pem, trust_bundle_pem=trust.trust_bundle.encode(),
                      not_after=not_after)

    async def _sign_at_backend(self, mesh: str, mesh_spec: MeshSpec, trust: MeshTrustSpec,
                               csr: x509.CertificateSigningRequest, uris: list[str],
                               now: dt.datetime, lifetime: dt.timedelta
                               ) -> tuple[bytes, dt.datetime]:
        backend = _backend(mesh_spec, trust.signer)
        try:
            if backend is None:
                raise CaBackendError(f"backend {trust.signer.backend!r} signs for mesh "
                                     f"{mesh!r} but is not among its backends")
            provider = provider_for(self._manager, mesh, backend, trust.signer.generation)
            signed = await provider.sign_workload(csr, uris, now, lifetime)
        except CaBackendError as exc:
            self._set_error(mesh, f"backend {trust.signer.backend!r}: {exc.detail}")
            raise CaUnavailable(f"mesh {mesh!r}: the CA cannot issue right now: "
                                f"{exc.detail}") from None
        self._set_error(mesh, "")
        pem = b"".join(c.public_bytes(Encoding.PEM) for c in (signed.certificate,
                                                               *signed.chain))
        return pem, signed.certificate.not_valid_after_utc

    def _set_error(self, mesh: str, error: str) -> None:
        error = error if len(error) <= 1000 else error[:1000] + "… (cut)"
        self._can_issue.labels(mesh).set(0 if error else 1)
        if error:
            self._issue_failures.labels(mesh).inc()
        if self._errors.get(mesh, "") != error:
            self._errors[mesh] = error
            self.changed.set()

    async def _mesh(self, mesh: str) -> MeshSpec:
        res = await self._manager.get("Mesh", mesh)
        if not isinstance(res.spec, MeshSpec):
            raise TypeError(f"Mesh {mesh} has a {type(res.spec).__name__} spec")
        return res.spec

    # -- the loop ------------------------------------------------------------------------

    async def run(self) -> None:
        """Keep every mesh's trust, intermediate, sidecars and report up to date."""
        wake = asyncio.Event()
        watcher = asyncio.create_task(follow(
            self._manager.store, WATCHED, lambda _: wake.set(),
            lambda _res, _deleted: wake.set()))
        sidecar_events = asyncio.create_task(self._forward_sidecar_events(wake))
        try:
            while True:
                wake.clear()
                try:
                    next_check = await self.reconcile(dt.datetime.now(dt.UTC))
                except GossamerError as exc:
                    log.warning("zone %s: CA reconcile failed: %s", self._zone, exc.detail)
                    next_check = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)
                timeout = (next_check - dt.datetime.now(dt.UTC)).total_seconds()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(max(timeout, 1.0), 3600)):
                        await wake.wait()
                await asyncio.sleep(REPORT_DEBOUNCE)
        finally:
            watcher.cancel()
            sidecar_events.cancel()
            await asyncio.gather(watcher, sidecar_events, return_exceptions=True)

    async def _forward_sidecar_events(self, wake: asyncio.Event) -> None:
        while True:
            events = [self.changed]
            if self._sidecars is not None:
                events.append(self._sidecars.changed)
            waiters = [asyncio.create_task(e.wait()) for e in events]
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waiters:
                    w.cancel()
            for e in events:
                e.clear()
            wake.set()

    async def reconcile(self, now: dt.datetime) -> dt.datetime:
        next_check = now + dt.timedelta(hours=1)
        meshes = {m.name: m for m in (await self._manager.list("Mesh")).items}
        self._trusts = {r.name: r.spec for r in (await self._manager.list("MeshTrust")).items
                        if isinstance(r.spec, MeshTrustSpec) and r.name in meshes}
        certs = {r.spec.mesh: r.spec for r in (await self._manager.list("ZoneCertificate")).items
                 if isinstance(r.spec, ZoneCertificateSpec) and r.spec.zone == self._zone}
        for mesh in meshes:
            try:
                next_check = min(next_check, await self._reconcile_mesh(mesh, certs.get(mesh),
                                                                     now))
            except GossamerError:
                raise  # the store: the whole pass is retried
            except Exception:  # one mesh's bad state must not stop the others
                log.exception("zone %s: the CA of mesh %s failed; retrying", self._zone, mesh)
                next_check = min(next_check, now + dt.timedelta(seconds=5))
        self._intermediates.keep_only(set(meshes))
        if self._sidecars is not None:  # forget renewals asked of sidecars that left
            live = {s.node_id for mesh in meshes for s in self._sidecars.sessions_of(mesh)}
            self._renewed = {n: v for n, v in self._renewed.items() if n in live}
            self._resent = {n: v for n, v in self._resent.items() if n in live}
        return next_check

    async def _reconcile_mesh(self, mesh: str, cert: ZoneCertificateSpec | None,
                              now: dt.datetime) -> dt.datetime:
        next_check = await self._intermediates.reconcile(mesh, cert, now)
        trust = self._trusts.get(mesh)
        again = self._sync_sidecars(mesh, trust) if trust is not None else None
        if again is not None:
            next_check = min(next_check, now + dt.timedelta(seconds=again))
        if await self._report(mesh, trust, now):
            grace_ends = self.startup_grace - (time.monotonic() - self._started)
            next_check = min(next_check, now + dt.timedelta(seconds=max(grace_ends, 0.5)))
        return next_check

    # -- the intermediate ------------------------------------------------------------------

    # -- sidecars and the report -----------------------------------------------------------

    def issuing_root(self, mesh: str, trust: MeshTrustSpec) -> str:
        """The fingerprint of the root this zone's new workload certificates chain to
        ("" if it cannot issue)."""
        if trust.signer.issues_workloads:
            return trust.signer.fingerprints[0] if trust.signer.fingerprints else ""
        issuer = self._intermediates.installed.get(mesh)
        if issuer is None:
            return ""
        root = chain_root(x509.load_pem_x509_certificates(issuer.chain_pem), _roots(trust))
        return fingerprint(root) if root is not None else ""

    def _sync_sidecars(self, mesh: str, trust: MeshTrustSpec) -> float | None:
        """Hand the bundle to every sidecar; ask those on other roots to renew, at most
        ``RENEW_PER_PASS`` at a time (a big zone must not take its CA down with a burst of
        CSRs). Returns in how many seconds to look again, None if nothing waits."""
        if self._sidecars is None:
            return None
        self._sidecars.set_trust_bundle(mesh, trust.trust_bundle.encode())
        missing = RESEND_AFTER if self._resend_bundle(mesh, trust) else None
        if self.issuing_root(mesh, trust) not in trust.signer.fingerprints:
            return missing  # re-issuing now would only give the same old root again
        signer_roots = set(trust.signer.fingerprints)
        target = signer_id(trust.signer)
        roots = _roots(trust)
        loop_now = asyncio.get_running_loop().time()
        behind = held_back = asking = 0

        def stale(sidecar: SidecarView) -> bool:
            nonlocal behind, held_back, asking
            if not sidecar.certificate_chain:
                return False
            if self._root_of(sidecar.certificate_chain, trust, roots) in signer_roots:
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

        asked = self._sidecars.renew(mesh, stale)
        if asked:
            log.info("zone %s: asked %d sidecars of mesh %s to renew onto %s%s", self._zone,
                     asked, mesh, target, f" ({held_back} more next)" if held_back else "")
        if held_back:
            return RENEW_PACE
        waits = [d for d in (missing, RENEW_AGAIN if behind else None) if d is not None]
        return min(waits) if waits else None

    def _resend_bundle(self, mesh: str, trust: MeshTrustSpec) -> bool:
        """Send the bundle again to sidecars that have reported another one for
        ``RESEND_AFTER`` seconds (a push lost or refused). True while any differs."""
        assert self._sidecars is not None
        loop_now = asyncio.get_running_loop().time()
        differs = False

        def behind(sidecar: SidecarView) -> bool:
            nonlocal differs
            if not sidecar.trust_bundle_digest or (
                    sidecar.trust_bundle_digest == trust.bundle_digest):
                self._resent.pop(sidecar.node_id, None)
                return False
            differs = True
            seen = self._resent.get(sidecar.node_id)
            if seen is None or seen[0] != trust.bundle_digest:
                self._resent[sidecar.node_id] = (trust.bundle_digest, loop_now)
                return False  # just pushed: give it time to report
            if loop_now - seen[1] < RESEND_AFTER:
                return False
            self._resent[sidecar.node_id] = (trust.bundle_digest, loop_now)
            return True

        sent = self._sidecars.resend_trust_bundle(mesh, behind)
        if sent:
            log.info("zone %s: sent the bundle of mesh %s again to %d sidecars that report "
                     "another", self._zone, mesh, sent)
        return differs

    def _root_of(self, chain: Sequence[x509.Certificate], trust: MeshTrustSpec,
                 roots: Sequence[x509.Certificate]) -> str:
        """The fingerprint of the bundle root ``chain`` leads to, or "unknown". Remembered
        per leaf and bundle: a zone recounts every sidecar on each change, and would
        otherwise check two signatures per sidecar each time."""
        key = (fingerprint(chain[0]), trust.bundle_digest)
        found = self._roots_seen.get(key)
        if found is None:
            root = chain_root(chain, roots)
            found = fingerprint(root) if root is not None else "unknown"
            if len(self._roots_seen) >= ROOTS_SEEN_MAX:
                self._roots_seen.clear()
            self._roots_seen[key] = found
        return found

    async def _report(self, mesh: str, trust: MeshTrustSpec | None, now: dt.datetime) -> bool:
        """Store this zone's status for ``mesh`` if it changed; True if it is held back
        (see ``startup_grace``)."""
        status = self.status(mesh, trust)
        with contextlib.suppress(NotFound):
            stored = (await self._manager.get("ZoneTrustStatus", mesh)).spec
            if isinstance(stored, ZoneTrustStatusSpec) and stored.model_copy(
                    update={"updated_at": ""}) == status:
                return False
            if (isinstance(stored, ZoneTrustStatusSpec)
                    and status.dataplanes < stored.dataplanes
                    and time.monotonic() - self._started < self.startup_grace):
                # Restarted: sidecars are still coming back. Reporting only those would
                # let a rotation count the others as done; the last report stands.
                return True
        status = status.model_copy(update={"updated_at": now.isoformat(timespec="seconds")})
        await self._manager.apply(Resource(type="ZoneTrustStatus", name=mesh, spec=status))
        return False

    def status(self, mesh: str, trust: MeshTrustSpec | None) -> ZoneTrustStatusSpec:
        sidecars = list(self._sidecars.sessions_of(mesh)) if self._sidecars else []
        digest = trust.bundle_digest if trust is not None else ""
        roots = _roots(trust) if trust is not None else []
        counts: dict[str, int] = {}
        for sidecar in sidecars:
            if not sidecar.certificate_chain:
                key = "pending"
            elif trust is None:
                key = "unknown"
            else:
                key = self._root_of(sidecar.certificate_chain, trust, roots)
            counts[key] = counts.get(key, 0) + 1
        intermediate = ""
        if trust is not None and not trust.signer.issues_workloads:
            intermediate = self.issuing_root(mesh, trust)
        return ZoneTrustStatusSpec(
            zone=self._zone, mesh=mesh, bundle_digest=digest, dataplanes=len(sidecars),
            dataplanes_with_bundle=sum(1 for s in sidecars
                                       if digest and s.trust_bundle_digest == digest),
            certificates=counts, intermediate_root=intermediate,
            issuance_error=self._errors.get(mesh, ""))


def _backend(mesh: MeshSpec, ca: CaIdentity) -> CaBackend | None:
    for backend in mesh.mtls.backends if mesh.mtls else []:
        if backend.name == ca.backend and backend.type == BackendType(ca.type):
            return backend
    return None
