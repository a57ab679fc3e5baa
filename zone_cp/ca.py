"""The zone's certificate authority per mesh, as every replica runs it: workload
certificates, bundles, rotation on the sidecars' side, and this replica's census.

The mesh's ``MeshTrust`` (from the global, or from this zone's own controller when it is
standalone) says which CA signs and which roots every sidecar must trust. Every zone CP
replica:

* signs its sidecars' workload certificates with the zone's intermediate for the mesh as
  stored (``zone_cp.intermediates.stored_issuer``: the ``ZoneCertificate`` and the key it
  is for), reloaded whenever either changes. It never makes a key, a request or a
  rotation: that is the keeper's (``zone_cp.ca_keeper``), on the zone's leader only.
  When the mesh's CA issues workload certificates itself (Vault in ``issue`` mode) the
  replica forwards each CSR to it instead, and uses no mesh key at all;
* hands the trust bundle to every sidecar of the mesh connected to it and, once the
  zone's issuer is on the signer's roots, asks every one whose certificate chains
  elsewhere to renew (``zone_cp.rollout``: the sidecars' side, paced);
* counts what its sidecars serve (``status``: how many serve the current bundle, which
  roots their certificates chain to, its intermediate's root, and why it cannot issue, if
  it cannot) and tells ``census_listeners`` when that changes. The keeper adds every
  live replica's count into the zone's ``ZoneTrustStatus``, on which the rotation
  advances.

Workload identities are decided from the sidecar's dataplane token, never from the
Dataplane or the CSR: ``spiffe://<mesh>/<service>`` for the token's service and
``gossamer://<tag>/<value>`` per tag the token binds (``workload_uris``). Until the
first intermediate is stored, signing raises ``CaUnavailable`` and agents retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from opentelemetry import trace
from prometheus_client import CollectorRegistry, Counter, Gauge

from gossamer.errors import GossamerError
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
from gossamer.resources import ResourceManager
from gossamer.store.follow import follow
from proxy.context import spiffe, tag_uri
from zone_cp.intermediates import Issuer, stored_issuer
from zone_cp.rollout import Rollout, Sidecars, bundle_roots

log = logging.getLogger(__name__)
tracer = trace.get_tracer("gossamer.ca")

DEFAULT_WORKLOAD_LIFETIME = dt.timedelta(hours=24)
REPORT_DEBOUNCE = 0.2   # seconds: sidecar events are gathered into one status report
# GlobalSecret: the intermediates' keys, which the keeper promotes after a rotation.
WATCHED = ["Mesh", "MeshTrust", "ZoneCertificate", "Secret", "GlobalSecret"]


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


class ZoneCa:
    def __init__(self, manager: ResourceManager, zone: str, sidecars: Sidecars | None = None,
                 metrics: CollectorRegistry | None = None) -> None:
        """``manager`` is read, never written: the replica's CA state is the keeper's."""
        self._manager = manager
        registry = metrics or CollectorRegistry()
        self._can_issue = Gauge("gossamer_zone_ca_can_issue", "1 if the zone could issue "
                                "workload certificates for the mesh at the last attempt",
                                ["mesh"], registry=registry)
        self._issue_failures = Counter("gossamer_zone_ca_issue_failures", "Workload "
                                       "certificates the zone could not issue", ["mesh"],
                                       registry=registry)
        self._zone = zone
        # The sidecars' side: their bundle, renewals and counts (``zone_cp.rollout``).
        self.rollout = Rollout(zone, sidecars)
        self._trusts: dict[str, MeshTrustSpec] = {}
        self.installed: dict[str, Issuer] = {}  # mesh -> the stored intermediate
        self._errors: dict[str, str] = {}
        self.changed = asyncio.Event()
        # Called when this replica's census (``statuses``) changes: the keeper and the
        # replica's record (``zone_cp.replicas``) follow it.
        self.census_listeners: list[Callable[[], None]] = []
        self._census: dict[str, ZoneTrustStatusSpec] = {}

    # -- signing -------------------------------------------------------------------------

    def trust(self, mesh: str) -> MeshTrustSpec:
        trust = self._trusts.get(mesh)
        if trust is None:
            raise CaUnavailable(f"zone {self._zone} does not know the CA of mesh {mesh!r} "
                                "yet: it comes from the control plane that owns the roots")
        return trust

    def issuer(self, mesh: str) -> Issuer:
        """The zone's intermediate for ``mesh`` (``CaUnavailable`` until it has one)."""
        issuer = self.installed.get(mesh)
        if issuer is None:
            raise CaUnavailable(f"zone {self._zone} has no intermediate CA for mesh {mesh!r} "
                                "yet: it is requested from the control plane that owns the "
                                "roots by the zone's leader")
        return issuer

    async def trust_bundle(self, mesh: str) -> bytes:
        return self.trust(mesh).trust_bundle.encode()

    async def sign(self, mesh: str, uris: Sequence[str],
                   csr: x509.CertificateSigningRequest,
                   now: dt.datetime | None = None) -> Signed:
        """Sign ``csr`` with exactly ``uris`` (``workload_uris``) as its identity, in a
        ``ca.issue`` span (exported over OTLP when configured: ``gossamer.telemetry``)."""
        with tracer.start_as_current_span("ca.issue", attributes={
                "gossamer.mesh": mesh, "gossamer.identity": ",".join(uris)}):
            return await self._sign(mesh, uris, csr, now)

    async def _sign(self, mesh: str, uris: Sequence[str],
                    csr: x509.CertificateSigningRequest,
                    now: dt.datetime | None = None) -> Signed:
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
            if self.rollout.sidecars is not None:
                events.append(self.rollout.sidecars.changed)
            waiters = [asyncio.create_task(e.wait()) for e in events]
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waiters:
                    w.cancel()
            for e in events:
                e.clear()
            wake.set()

    async def refresh(self) -> dict[str, MeshTrustSpec]:
        """Read the meshes' trusts and the stored intermediates (each replica signs with
        what is stored); the meshes' trusts, by mesh."""
        meshes = {m.name for m in (await self._manager.list("Mesh")).items}
        self._trusts = {r.name: r.spec for r in (await self._manager.list("MeshTrust")).items
                        if isinstance(r.spec, MeshTrustSpec) and r.name in meshes}
        certs = {r.spec.mesh: r.spec for r in (await self._manager.list("ZoneCertificate")).items
                 if isinstance(r.spec, ZoneCertificateSpec) and r.spec.zone == self._zone}
        for mesh in meshes:
            try:
                self._install(mesh, await stored_issuer(self._manager, mesh, certs.get(mesh)))
            except ValueError:  # an unreadable certificate or key: sign with none
                log.exception("zone %s: the stored intermediate of mesh %s is unusable",
                              self._zone, mesh)
                self._install(mesh, None)
        for gone in set(self.installed) - meshes:
            del self.installed[gone]
        return dict(self._trusts)

    def _install(self, mesh: str, issuer: Issuer | None) -> None:
        current = self.installed.get(mesh)
        if issuer is None:
            self.installed.pop(mesh, None)
        elif current is None or current.chain_pem != issuer.chain_pem:
            self.installed[mesh] = issuer
            log.info("zone %s: intermediate CA for mesh %s installed (signed by %s)",
                     self._zone, mesh, issuer.signer or "the mesh root")

    async def reconcile(self, now: dt.datetime) -> dt.datetime:
        """Reload trusts and intermediates, roll the bundle out, recount. Returns when to
        look again."""
        next_check = now + dt.timedelta(hours=1)
        trusts = await self.refresh()
        for mesh, trust in trusts.items():
            try:
                again = self.rollout.sync(mesh, trust, self.issuing_root(mesh, trust))
            except Exception:  # one mesh's bad state must not stop the others
                log.exception("zone %s: the CA of mesh %s failed; retrying", self._zone, mesh)
                again = 5.0
            if again is not None:
                next_check = min(next_check, now + dt.timedelta(seconds=again))
        self.rollout.forget_departed(list(trusts))
        self._recount(trusts)
        return next_check

    def _recount(self, trusts: Mapping[str, MeshTrustSpec]) -> None:
        census = {mesh: self.status(mesh, trust) for mesh, trust in trusts.items()}
        if census != self._census:
            self._census = census
            for listener in self.census_listeners:
                listener()

    def statuses(self) -> list[ZoneTrustStatusSpec]:
        """This replica's census per mesh, as of its last pass."""
        return list(self._census.values())

    # -- the report ------------------------------------------------------------------------

    def issuing_root(self, mesh: str, trust: MeshTrustSpec) -> str:
        """The fingerprint of the root this zone's new workload certificates chain to
        ("" if it cannot issue)."""
        if trust.signer.issues_workloads:
            return trust.signer.fingerprints[0] if trust.signer.fingerprints else ""
        issuer = self.installed.get(mesh)
        if issuer is None:
            return ""
        root = chain_root(x509.load_pem_x509_certificates(issuer.chain_pem),
                          bundle_roots(trust))
        return fingerprint(root) if root is not None else ""

    def status(self, mesh: str, trust: MeshTrustSpec | None) -> ZoneTrustStatusSpec:
        """This replica's report for ``mesh`` as of now (without ``updated_at``): its
        own sidecars only."""
        census = self.rollout.census(mesh, trust)
        intermediate = ""
        if trust is not None and not trust.signer.issues_workloads:
            intermediate = self.issuing_root(mesh, trust)
        return ZoneTrustStatusSpec(
            zone=self._zone, mesh=mesh,
            bundle_digest=trust.bundle_digest if trust is not None else "",
            dataplanes=census.dataplanes, dataplanes_with_bundle=census.with_bundle,
            certificates=census.certificates, intermediate_root=intermediate,
            issuance_error=self._errors.get(mesh, ""))


def _backend(mesh: MeshSpec, ca: CaIdentity) -> CaBackend | None:
    for backend in mesh.mtls.backends if mesh.mtls else []:
        if backend.name == ca.backend and backend.type == BackendType(ca.type):
            return backend
    return None
