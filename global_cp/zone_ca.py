"""The global signs each zone's intermediate CA from the CSR the zone sent.

It follows the ``ZoneCertificateRequest`` resources the zones publish (stored here under
zone-hashed names with the zone's label, set from the authenticated stream), signs each
with its mesh's root — which never leaves the global — and publishes a
``ZoneCertificate`` only that zone receives. A request for a key that already has a
fresh certificate is not signed again.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import Encoding

from gossamer.errors import GossamerError, NotFound
from gossamer.model.base import Resource
from gossamer.model.zonecertificate import ZoneCertificateRequestSpec, ZoneCertificateSpec
from gossamer.pki.certs import sign_intermediate
from gossamer.pki.mesh_roots import MeshRoots
from gossamer.resources import ResourceManager
from gossamer.store.follow import follow
from sync.applier import ORIGIN_LABEL, ORIGIN_ZONE, ZONE_LABEL

log = logging.getLogger(__name__)

INTERMEDIATE_LIFETIME = dt.timedelta(days=7)


def _public_der(key: object) -> bytes:
    return key.public_bytes(Encoding.DER,  # type: ignore[attr-defined]
                            serialization.PublicFormat.SubjectPublicKeyInfo)


class ZoneCaSigner:
    def __init__(self, manager: ResourceManager,
                 lifetime: dt.timedelta = INTERMEDIATE_LIFETIME) -> None:
        self._manager = manager
        self._roots = MeshRoots(manager)
        self._lifetime = lifetime

    async def run(self) -> None:
        wake = asyncio.Event()
        watcher = asyncio.create_task(follow(
            self._manager.store, ["ZoneCertificateRequest", "Mesh"],
            lambda _: wake.set(), lambda _res, _deleted: wake.set()))
        try:
            while True:
                await wake.wait()
                wake.clear()
                await self.sign_pending(dt.datetime.now(dt.UTC))
        finally:
            watcher.cancel()

    async def sign_pending(self, now: dt.datetime) -> int:
        signed = 0
        for req in (await self._manager.list("ZoneCertificateRequest")).items:
            try:
                signed += await self._sign_one(req, now)
            except (GossamerError, ValueError) as exc:
                log.warning("cannot sign the zone CA request %s: %s", req.name, exc)
        return signed

    async def _sign_one(self, req: Resource, now: dt.datetime) -> int:
        zone = req.labels.get(ZONE_LABEL)
        spec = req.spec
        if (not zone or req.labels.get(ORIGIN_LABEL) != ORIGIN_ZONE
                or not isinstance(spec, ZoneCertificateRequestSpec)):
            return 0
        csr = x509.load_pem_x509_csr(spec.csr.encode())
        if not csr.is_signature_valid:
            raise ValueError("the CSR's signature does not verify")
        name = f"{zone}.{spec.mesh}"
        try:
            current = (await self._manager.get("ZoneCertificate", name)).spec
        except NotFound:
            current = None
        if isinstance(current, ZoneCertificateSpec):
            cert = x509.load_pem_x509_certificate(current.certificate.encode())
            fresh = cert.not_valid_after_utc - now > self._lifetime / 3
            if fresh and _public_der(cert.public_key()) == _public_der(csr.public_key()):
                return 0
        try:
            root = await self._roots.root(spec.mesh)
        except NotFound:
            return 0  # the mesh is gone; the request goes when the zone drops it
        cert = sign_intermediate(root, csr, now, self._lifetime)
        await self._manager.apply(Resource(type="ZoneCertificate", name=name, spec=(
            ZoneCertificateSpec(zone=zone, mesh=spec.mesh,
                                certificate=cert.public_bytes(Encoding.PEM).decode(),
                                trust_bundle=root.cert_pem().decode()))))
        log.info("signed the intermediate CA of zone %s for mesh %s", zone, spec.mesh)
        return 1
