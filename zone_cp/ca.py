"""The zone's certificate authority per mesh, and workload certificates from CSRs.

Standalone, the zone owns the mesh root (``gossamer.pki.mesh_roots``) and signs with it.
Federated, the root never leaves the global: the zone makes its own key per mesh,
publishes a ``ZoneCertificateRequest`` (the CSR) that the sync carries to the global, and
signs with the intermediate that comes back as a ``ZoneCertificate``; it asks again with a
new key when a third of the intermediate's life is left. Until the first one arrives,
signing raises ``CaUnavailable`` and agents retry.

Workload identities are decided here, from the registered Dataplane, never from the CSR:
``spiffe://<mesh>/<service>`` per inbound service and ``gossamer://<tag>/<value>`` per
inbound tag.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import Encoding

from gossamer.errors import GossamerError, NotFound
from gossamer.model.base import Resource
from gossamer.model.dataplane import DataplaneSpec
from gossamer.model.fields import duration_seconds
from gossamer.model.mesh import MeshSpec
from gossamer.model.zonecertificate import ZoneCertificateRequestSpec, ZoneCertificateSpec
from gossamer.pki.certs import KeyPair, PrivateKey, new_csr, new_key, sign_leaf
from gossamer.pki.mesh_roots import MeshRoots, read_secret_json, secret_json
from gossamer.resources import ResourceManager
from gossamer.store.follow import follow
from proxy.context import spiffe, tag_uri

log = logging.getLogger(__name__)

DEFAULT_WORKLOAD_LIFETIME = dt.timedelta(hours=24)
ZONE_KEY_LABEL = "gossamer.io/zone-ca-key"


class CaUnavailable(GossamerError):
    http_status = 503
    title = "certificate authority unavailable"
    retryable = True


@dataclass(frozen=True)
class Signed:
    chain_pem: bytes
    trust_bundle_pem: bytes
    not_after: dt.datetime


@dataclass(frozen=True)
class Issuer:
    """What signs a mesh's workloads here: the CA, the chain above leaves, the roots."""

    ca: KeyPair
    chain_pem: bytes
    trust_bundle_pem: bytes


def workload_uris(mesh: str, dataplane: DataplaneSpec) -> list[str]:
    uris = {spiffe(mesh, ib.service) for ib in dataplane.networking.inbound}
    for ib in dataplane.networking.inbound:
        uris |= {tag_uri(k, v) for k, v in ib.tags.items() if k != "gossamer.io/service"}
    return sorted(uris)


def workload_lifetime(mesh: MeshSpec) -> dt.timedelta:
    backend = mesh.mtls.enabled() if mesh.mtls else None
    if backend is None:
        return DEFAULT_WORKLOAD_LIFETIME
    return dt.timedelta(seconds=duration_seconds(backend.dp_cert.rotation.expiration))


def _public_der(key: object) -> bytes:
    return key.public_bytes(Encoding.DER,  # type: ignore[attr-defined]
                            serialization.PublicFormat.SubjectPublicKeyInfo)


class ZoneCa:
    def __init__(self, manager: ResourceManager, zone: str, federated: bool) -> None:
        self._manager = manager
        self._zone = zone
        self._federated = federated
        self._roots = MeshRoots(manager)
        self._intermediates: dict[str, Issuer] = {}
        self.changed = asyncio.Event()

    async def issuer(self, mesh: str) -> Issuer:
        if not self._federated:
            root = await self._roots.root(mesh)
            return Issuer(root, b"", root.cert_pem())
        issuer = self._intermediates.get(mesh)
        if issuer is None:
            raise CaUnavailable(f"zone {self._zone} has no intermediate CA for mesh {mesh!r} "
                                "yet: it is requested from the global")
        return issuer

    async def trust_bundle(self, mesh: str) -> bytes:
        return (await self.issuer(mesh)).trust_bundle_pem

    async def sign(self, mesh: str, dataplane: DataplaneSpec,
                   csr: x509.CertificateSigningRequest,
                   now: dt.datetime | None = None) -> Signed:
        now = now or dt.datetime.now(dt.UTC)
        mesh_spec = await self._roots.mesh(mesh)
        issuer = await self.issuer(mesh)
        cert = sign_leaf(issuer.ca, csr, now, workload_lifetime(mesh_spec),
                         uris=workload_uris(mesh, dataplane), server=True, client=True)
        return Signed(chain_pem=cert.public_bytes(Encoding.PEM) + issuer.chain_pem,
                      trust_bundle_pem=issuer.trust_bundle_pem,
                      not_after=cert.not_valid_after_utc)

    # -- federated: intermediates from the global --------------------------------------

    async def run(self) -> None:
        """Keep an intermediate per mesh: request, install what arrives, renew (federated
        zones only; a standalone zone signs with its own root)."""
        wake = asyncio.Event()
        watcher = asyncio.create_task(follow(
            self._manager.store, ["Mesh", "ZoneCertificate"],
            lambda _: wake.set(), lambda _res, _deleted: wake.set()))
        try:
            while True:
                next_check = await self._reconcile(dt.datetime.now(dt.UTC))
                wake.clear()
                timeout = max(1.0, (next_check - dt.datetime.now(dt.UTC)).total_seconds())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout=min(timeout, 3600))
        finally:
            watcher.cancel()

    async def _reconcile(self, now: dt.datetime) -> dt.datetime:
        next_check = now + dt.timedelta(hours=1)
        meshes = (await self._manager.list("Mesh")).items
        certs = {r.spec.mesh: r.spec for r in (await self._manager.list("ZoneCertificate")).items
                 if isinstance(r.spec, ZoneCertificateSpec) and r.spec.zone == self._zone}
        for mesh in meshes:
            renew_at = await self._mesh_intermediate(mesh.name, certs.get(mesh.name), now)
            next_check = min(next_check, renew_at)
        return next_check

    async def _mesh_intermediate(self, mesh: str, cert: ZoneCertificateSpec | None,
                                 now: dt.datetime) -> dt.datetime:
        """Install ``cert`` if it is for our key; request a new one when due. Returns when
        to look again."""
        key = await self._key(mesh, renew=False)
        if cert is not None:
            parsed = x509.load_pem_x509_certificate(cert.certificate.encode())
            lifetime = parsed.not_valid_after_utc - parsed.not_valid_before_utc
            renew_at = parsed.not_valid_after_utc - lifetime / 3
            if _public_der(parsed.public_key()) == _public_der(key.public_key()):
                self._install(mesh, KeyPair(parsed, key), cert)
                if now < renew_at:
                    return renew_at
                key = await self._key(mesh, renew=True)
        await self._request(mesh, key)
        return now + dt.timedelta(minutes=5)

    def _install(self, mesh: str, ca: KeyPair, cert: ZoneCertificateSpec) -> None:
        issuer = Issuer(ca, ca.cert_pem(), cert.trust_bundle.encode())
        if self._intermediates.get(mesh) != issuer:
            self._intermediates[mesh] = issuer
            log.info("zone %s: intermediate CA for mesh %s installed", self._zone, mesh)
            self.changed.set()

    async def _key(self, mesh: str, renew: bool) -> PrivateKey:
        name = f"zone-ca-key-{mesh}"
        stored = await read_secret_json(self._manager, name)
        if stored is not None and not renew:
            loaded = serialization.load_pem_private_key(stored["key"].encode(), password=None)
            return loaded  # type: ignore[return-value]
        key = new_key()
        pem = key.private_bytes(Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
        await self._manager.apply(secret_json(name, {ZONE_KEY_LABEL: mesh}, {"key": pem}))
        return key

    async def _request(self, mesh: str, key: PrivateKey) -> None:
        with contextlib.suppress(NotFound):
            asked = (await self._manager.get("ZoneCertificateRequest", mesh)).spec
            if isinstance(asked, ZoneCertificateRequestSpec) and _public_der(
                    x509.load_pem_x509_csr(asked.csr.encode()).public_key()) == _public_der(
                    key.public_key()):
                return  # already asked with this key
        csr = new_csr(key, f"Gossamer zone {self._zone} mesh {mesh}")
        await self._manager.apply(Resource(
            type="ZoneCertificateRequest", name=mesh,
            spec=ZoneCertificateRequestSpec(mesh=mesh,
                                            csr=csr.public_bytes(Encoding.PEM).decode())))
        log.info("zone %s: requested an intermediate CA for mesh %s", self._zone, mesh)
