"""The mesh CAs of the control plane that owns the roots: rotation and zone intermediates.

Runs at the global (and at a standalone zone, for itself). For each mesh it keeps the
``MeshTrust`` moving (``gossamer.pki.rotation``): it asks the Mesh's enabled backend for
its roots — a backend that fails its check is reported in ``MeshTrust.message`` and never
replaces the CA in use — and feeds the state machine with what each zone reports
(``ZoneTrustStatus``). A CA whose roots have left every bundle is retired (a builtin root's
key is deleted).

It also signs the zones' intermediate CAs: each ``ZoneCertificateRequest`` (a CSR; the key
stays in the zone) is signed by the mesh's current signer and published as the zone's
``ZoneCertificate``. A certificate that is fresh, for the same key and from the current
signer is not signed again; when the signer changes (a rotation reaching ``reissuing``)
every zone gets a new one. A backend that cannot sign (Vault down) is retried with backoff
while the zones keep their current intermediates.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding
from prometheus_client import CollectorRegistry, Counter, Gauge

from gossamer.errors import Conflict, GossamerError, NotFound
from gossamer.model.base import Resource
from gossamer.model.labels import ORIGIN_LABEL, ORIGIN_ZONE, ZONE_LABEL
from gossamer.model.mesh import BackendType, CaBackend, MeshSpec
from gossamer.model.meshtrust import CaIdentity, MeshTrustSpec, TrustPhase
from gossamer.model.zone import is_enabled
from gossamer.model.zonecertificate import ZoneCertificateRequestSpec, ZoneCertificateSpec
from gossamer.model.zonetrust import ZoneTrustStatusSpec
from gossamer.pki.backends import provider_for
from gossamer.pki.backends.base import CaBackendError, CaProvider
from gossamer.pki.backends.builtin import BuiltinProvider
from gossamer.pki.certs import chain_root, check_csr, public_der
from gossamer.pki.names import legacy_zone_certificate_name, zone_certificate_name
from gossamer.pki.rotation import Wanted, advance, identity, signer_id
from gossamer.resources import ResourceManager
from gossamer.store.follow import follow

log = logging.getLogger(__name__)

INTERMEDIATE_LIFETIME = dt.timedelta(days=7)
# A mesh with mTLS but no backend named uses a builtin one by this name.
IMPLICIT_BACKEND = CaBackend(name="builtin", type=BackendType.BUILTIN)
WATCHED = ["Mesh", "MeshTrust", "ZoneTrustStatus", "ZoneCertificateRequest", "Secret", "Zone"]
WANTED_TTL = 30.0      # how long a backend's check and roots are trusted, seconds
ROTATING_POLL = 30.0   # a safety net while a rotation runs: store events drive it
RETRY_MAX = 60.0


def zone_of(res: Resource, local_zone: str | None) -> str | None:
    """The zone a zone-owned resource came from: the label the sync set from the
    authenticated stream (never the zone's own claim), or ``local_zone`` for one written
    here by a standalone zone."""
    if res.labels.get(ORIGIN_LABEL) == ORIGIN_ZONE:
        return res.labels.get(ZONE_LABEL)
    return local_zone


def enabled_backend(mesh: MeshSpec) -> CaBackend:
    backend = mesh.mtls.enabled() if mesh.mtls else None
    return backend or IMPLICIT_BACKEND



class CaMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        registry = registry or CollectorRegistry()
        self.up = Gauge("gossamer_ca_backend_up", "1 if the mesh's CA backend passed its last "
                        "check or signing, else 0", ["mesh", "backend"], registry=registry)
        self.failures = Counter("gossamer_ca_backend_failures", "Checks and signings of a "
                                "mesh CA backend that failed", ["mesh", "backend"],
                                registry=registry)
        self.phase = Gauge("gossamer_ca_rotation_phase", "1 for the phase each mesh's CA is "
                           "in (stable, adding-trust, reissuing)", ["mesh", "phase"],
                           registry=registry)
        self.intermediates = Counter("gossamer_ca_intermediates_signed", "Zone intermediate "
                                     "CAs signed", ["mesh", "backend"], registry=registry)


class MeshCaController:
    def __init__(self, manager: ResourceManager, local_zone: str | None = None, *,
                 lifetime: dt.timedelta = INTERMEDIATE_LIFETIME,
                 metrics: CollectorRegistry | None = None) -> None:
        """``local_zone``: run for a standalone zone, whose own requests and statuses
        carry no zone label."""
        self._manager = manager
        self._local_zone = local_zone
        self._lifetime = lifetime
        self._metrics = CaMetrics(metrics)
        self._wanted: dict[str, tuple[float, str, Wanted]] = {}
        self._sign_errors: dict[str, str] = {}
        self._failures = 0
        self._lock = asyncio.Lock()

    # -- the loop ------------------------------------------------------------------------

    async def run(self) -> None:
        wake = asyncio.Event()

        def changed(res: Resource, _deleted: bool) -> None:
            if res.type in ("Mesh", "Secret"):
                self._wanted.clear()
            wake.set()

        watcher = asyncio.create_task(follow(self._manager.store, WATCHED,
                                             lambda _: wake.set(), changed))
        try:
            while True:
                wake.clear()
                try:
                    delay = await self.reconcile(dt.datetime.now(dt.UTC))
                except GossamerError as exc:  # the store: try again shortly
                    log.warning("mesh CA reconcile failed: %s", exc.detail)
                    delay = 2.0
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await wake.wait()
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)

    async def reconcile(self, now: dt.datetime) -> float:
        """One pass over every mesh; returns seconds until the next pass is due."""
        async with self._lock:
            meshes = (await self._manager.list("Mesh")).items
            trusts = {r.name: r for r in (await self._manager.list("MeshTrust")).items}
            statuses = await self._zone_statuses()
            busy = False
            failed = False
            for mesh in meshes:
                if not isinstance(mesh.spec, MeshSpec):
                    continue
                try:
                    trust = await self._advance(mesh.name, mesh.spec, trusts.get(mesh.name),
                                                statuses.get(mesh.name, []), now)
                except GossamerError:
                    raise  # the store: the whole pass is retried
                except Exception:  # one mesh's bad state must not stop the others
                    log.exception("mesh %s: the CA controller failed; retrying", mesh.name)
                    failed = True
                    continue
                if trust is None:
                    failed = True
                    continue
                busy |= trust.phase is not TrustPhase.STABLE
                failed |= bool(trust.message) and trust.phase is TrustPhase.STABLE
            names = {m.name for m in meshes}
            for gone in set(self._wanted) - names:
                del self._wanted[gone]
            for name in set(trusts) - names:
                with contextlib.suppress(NotFound):
                    await self._manager.delete("MeshTrust", name)
            failed |= not await self._sign_pending(now)
        if failed:
            self._failures += 1
            return min(2.0 ** self._failures, RETRY_MAX)
        self._failures = 0
        return ROTATING_POLL if busy else 3600.0

    # -- rotation ------------------------------------------------------------------------

    async def _advance(self, mesh: str, spec: MeshSpec, stored: Resource | None,
                       zones: Sequence[ZoneTrustStatusSpec],
                       now: dt.datetime) -> MeshTrustSpec | None:
        current = stored.spec if stored is not None else None
        assert current is None or isinstance(current, MeshTrustSpec)
        backend = enabled_backend(spec)
        generation = current.generations.get(backend.name, 0) if current is not None else 0
        wanted = await self._wanted_ca(mesh, backend, generation)
        step = advance(current, wanted, zones, now)
        if step is None:
            log.warning("mesh %s has no usable CA: %s", mesh, wanted.error)
            return None
        trust = step.trust
        sign_error = self._sign_errors.get(mesh, "")
        if sign_error and sign_error not in trust.message:
            trust = trust.model_copy(update={"message": "; ".join(
                p for p in (trust.message, sign_error) if p)[:4096]})
        for phase in TrustPhase:
            self._metrics.phase.labels(mesh, phase.value).set(phase is trust.phase)
        if current is not None and trust == current:
            return trust
        if current is None or trust.phase is not current.phase:
            log.info("mesh %s CA: %s (signer %s)", mesh, trust.phase.value,
                     signer_id(trust.signer))
        try:
            await self._manager.apply(Resource(type="MeshTrust", name=mesh, spec=trust),
                                      expected_version=stored.meta.version if stored else None)
        except Conflict:
            return trust  # another writer moved it on; the next pass sees its state
        if step.retired is not None:
            self._wanted.pop(mesh, None)
            await self._retire(mesh, step.retired, trust.signer)
        return trust

    async def _wanted_ca(self, mesh: str, backend: CaBackend, generation: int) -> Wanted:
        key = f"{backend.model_dump_json()}#{generation}"
        loop = asyncio.get_running_loop()
        cached = self._wanted.get(mesh)
        if cached is not None and cached[1] == key and loop.time() - cached[0] < WANTED_TTL:
            return cached[2]
        gen = generation if backend.type is BackendType.BUILTIN else 0
        try:
            provider = provider_for(self._manager, mesh, backend, gen)
            await provider.check()
            roots = await provider.roots()
            wanted = Wanted(identity(backend.name, backend.type.value, gen, roots,
                                     provider.issues_workloads))
            self._metrics.up.labels(mesh, backend.name).set(1)
        except CaBackendError as exc:
            self._metrics.up.labels(mesh, backend.name).set(0)
            self._metrics.failures.labels(mesh, backend.name).inc()
            log.warning("mesh %s: backend %s cannot be used: %s", mesh, backend.name,
                        exc.detail)
            wanted = Wanted(None, f"backend {backend.name!r} cannot be used, the CA in use "
                                  f"stays: {exc.detail}")
        self._wanted[mesh] = (loop.time(), key, wanted)
        return wanted

    async def _retire(self, mesh: str, retired: CaIdentity, signer: CaIdentity) -> None:
        log.info("mesh %s: CA %s retired, its roots left every trust bundle", mesh,
                 signer_id(retired))
        if retired.type != BackendType.BUILTIN.value or (
                retired.backend, retired.generation) == (signer.backend, signer.generation):
            return
        backend = CaBackend(name=retired.backend, type=BackendType.BUILTIN)
        with contextlib.suppress(NotFound):
            await BuiltinProvider(self._manager, mesh, backend, retired.generation).delete_root()

    async def request_rotation(self, mesh: str) -> MeshTrustSpec:
        """Regenerate the builtin root of ``mesh`` (``POST /meshes/{mesh}/ca/rotate``)."""
        async with self._lock:
            res = await self._manager.get("MeshTrust", mesh)
            spec = res.spec
            assert isinstance(spec, MeshTrustSpec)
            if spec.phase is not TrustPhase.STABLE:
                raise Conflict(f"mesh {mesh!r} is already rotating its CA (phase "
                               f"{spec.phase.value}); wait until it is stable")
            if spec.signer.type != BackendType.BUILTIN.value:
                raise Conflict(f"mesh {mesh!r} uses the {spec.signer.type} backend "
                               f"{spec.signer.backend!r}: only a builtin root can be "
                               "regenerated; switch enabledBackend to rotate to another CA")
            backend = spec.signer.backend
            updated = spec.model_copy(update={"generations": {
                **spec.generations,
                backend: max(spec.generations.get(backend, 0), spec.signer.generation) + 1}})
            await self._manager.apply(Resource(type="MeshTrust", name=mesh, spec=updated),
                                      expected_version=res.meta.version)
            self._wanted.pop(mesh, None)
            return updated

    # -- zone statuses -------------------------------------------------------------------

    async def _zone_statuses(self) -> dict[str, list[ZoneTrustStatusSpec]]:
        """The statuses of the zones that take part, by mesh: at the global, enabled zones
        (by the label the sync set from the authenticated stream); standalone, ours."""
        if self._local_zone is None:
            zones = {z.name for z in (await self._manager.list("Zone")).items
                     if is_enabled(z)}
        else:
            zones = {self._local_zone}
        out: dict[str, list[ZoneTrustStatusSpec]] = {}
        for res in (await self._manager.list("ZoneTrustStatus")).items:
            zone = self._zone_of(res)
            if zone is None or zone not in zones or not isinstance(res.spec, ZoneTrustStatusSpec):
                continue
            out.setdefault(res.spec.mesh, []).append(res.spec.model_copy(update={"zone": zone}))
        return out

    def _zone_of(self, res: Resource) -> str | None:
        return zone_of(res, self._local_zone)

    # -- zone intermediates --------------------------------------------------------------

    async def _sign_pending(self, now: dt.datetime) -> bool:
        """Sign what is due; False if a backend failed (it is retried with backoff)."""
        trusts = {r.name: r.spec for r in (await self._manager.list("MeshTrust")).items
                  if isinstance(r.spec, MeshTrustSpec)}
        errors: dict[str, str] = {}
        for req in (await self._manager.list("ZoneCertificateRequest")).items:
            zone = self._zone_of(req)
            spec = req.spec
            if zone is None or not isinstance(spec, ZoneCertificateRequestSpec):
                continue
            trust = trusts.get(spec.mesh)
            if trust is None or trust.signer.issues_workloads:
                continue
            try:
                await self._sign_one(zone, spec, trust, now)
            except CaBackendError as exc:
                self._metrics.up.labels(spec.mesh, trust.signer.backend).set(0)
                self._metrics.failures.labels(spec.mesh, trust.signer.backend).inc()
                errors[spec.mesh] = (f"cannot sign the intermediate of zone {zone} with "
                                     f"{signer_id(trust.signer)}: {exc.detail}")
                log.warning("mesh %s: %s", spec.mesh, errors[spec.mesh])
            except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
                log.warning("zone %s sent an unusable CSR for mesh %s: %s", zone, spec.mesh,
                            exc)
            except GossamerError:
                raise
            except Exception:  # never let one request stop every other zone's signing
                log.exception("cannot sign the intermediate of zone %s for mesh %s", zone,
                              spec.mesh)
                errors[spec.mesh] = f"cannot sign the intermediate of zone {zone}: see the log"
        self._sign_errors = errors
        return not errors

    async def _sign_one(self, zone: str, req: ZoneCertificateRequestSpec, trust: MeshTrustSpec,
                        now: dt.datetime) -> None:
        csr = x509.load_pem_x509_csr(req.csr.encode())
        check_csr(csr)  # a refused key is logged below, like any unusable CSR
        name = zone_certificate_name(zone, req.mesh)
        signer_roots = [x509.load_pem_x509_certificate(p.encode()) for p in trust.signer.roots]
        with contextlib.suppress(NotFound):
            current = (await self._manager.get("ZoneCertificate", name)).spec
            if isinstance(current, ZoneCertificateSpec):
                cert = x509.load_pem_x509_certificate(current.certificate.encode())
                chain = x509.load_pem_x509_certificates(current.chain.encode()) if (
                    current.chain.strip()) else []
                fresh = cert.not_valid_after_utc - now > self._lifetime / 3
                # Fresh, for the zone's key, and on the signer's roots (the signer's name
                # alone could be a root that was retired and made again).
                if (fresh and public_der(cert.public_key()) == public_der(csr.public_key())
                        and chain_root([cert, *chain], signer_roots) is not None):
                    return
        provider = await self._provider(req.mesh, trust.signer)
        signed = await provider.sign_intermediate(csr, now, self._lifetime,
                                                  f"Gossamer zone {zone} mesh {req.mesh}")
        if chain_root([signed.certificate, *signed.chain], signer_roots) is None:
            raise CaBackendError(f"backend {trust.signer.backend!r} now signs under other "
                                 "roots than the mesh trusts; change the CA by enabling "
                                 "another backend instead of changing this one in place")
        pem = signed.certificate.public_bytes(Encoding.PEM).decode()
        above = "".join(c.public_bytes(Encoding.PEM).decode() for c in signed.chain)
        await self._manager.apply(Resource(type="ZoneCertificate", name=name, spec=(
            ZoneCertificateSpec(zone=zone, mesh=req.mesh, certificate=pem, chain=above,
                                trust_bundle=trust.trust_bundle,
                                signer=signer_id(trust.signer)))))
        await self._drop_legacy_certificate(zone, req.mesh)
        self._metrics.up.labels(req.mesh, trust.signer.backend).set(1)
        self._metrics.intermediates.labels(req.mesh, trust.signer.backend).inc()
        log.info("signed the intermediate CA of zone %s for mesh %s with %s", zone, req.mesh,
                 signer_id(trust.signer))

    async def _drop_legacy_certificate(self, zone: str, mesh: str) -> None:
        """Delete this zone's intermediate stored under its old name (``<zone>.<mesh>``,
        which two pairs could share): the zone would see it beside the new one and might
        install the old one. Another pair's certificate under that name stays."""
        legacy = legacy_zone_certificate_name(zone, mesh)
        with contextlib.suppress(NotFound):
            spec = (await self._manager.get("ZoneCertificate", legacy)).spec
            if isinstance(spec, ZoneCertificateSpec) and (spec.zone, spec.mesh) == (zone, mesh):
                await self._manager.delete("ZoneCertificate", legacy)

    async def _provider(self, mesh: str, ca: CaIdentity) -> CaProvider:
        """The provider of a CA the MeshTrust names, configured as the Mesh lists it."""
        spec = (await self._manager.get("Mesh", mesh)).spec
        listed = spec.mtls.backends if isinstance(spec, MeshSpec) and spec.mtls else []
        backends = {b.name: b for b in [*listed, IMPLICIT_BACKEND]}
        backend = backends.get(ca.backend)
        if backend is None or backend.type.value != ca.type:
            raise CaBackendError(f"backend {ca.backend!r} still signs for mesh {mesh!r} but "
                                 "is no longer among its backends: put it back until the "
                                 "rotation away from it has finished")
        return provider_for(self._manager, mesh, backend, ca.generation)
