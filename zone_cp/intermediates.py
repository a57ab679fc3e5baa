"""A federated or standalone zone's intermediate CA per mesh: its key, its request, its
certificate.

The zone makes its own key per mesh (a GlobalSecret named by
``gossamer.pki.names.zone_key_secret_name``: it never leaves the zone), publishes a
``ZoneCertificateRequest`` (the CSR) and installs the ``ZoneCertificate`` the owner of
the mesh roots signs for that key. A third of the way before expiry it asks again with a
*pending* key (a second GlobalSecret) and keeps the current key and certificate until the
new certificate arrives, so a zone restarted while the signer is unreachable still
issues. ``zone_cp.ca`` signs workloads with what
is installed here. A key stored under its old name (``zone-ca-key-<mesh>[-next]``, where
mesh ``a``'s pending key was mesh ``a-next``'s current one) is moved to the new name if
its mesh label says it is this mesh's.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import Encoding

from gossamer.errors import NotFound
from gossamer.model.base import Resource
from gossamer.model.labels import ZONE_KEY_LABEL
from gossamer.model.zonecertificate import ZoneCertificateRequestSpec, ZoneCertificateSpec
from gossamer.pki.backends.builtin import adopt_legacy, read_secret_json, secret_json
from gossamer.pki.certs import KeyPair, PrivateKey, new_csr, new_key, public_der
from gossamer.pki.names import legacy_zone_key_secret_name, zone_key_secret_name
from gossamer.resources import ResourceManager

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class Issuer:
    """What signs a mesh's workloads here: the intermediate and the CAs above it."""

    ca: KeyPair
    chain_pem: bytes          # the intermediate and the CAs between it and the root
    signer: str               # the mesh CA that signed it (``<backend>/<generation>``)


class Intermediates:
    def __init__(self, manager: ResourceManager, zone: str) -> None:
        self._manager = manager
        self._zone = zone
        self.installed: dict[str, Issuer] = {}

    def keep_only(self, meshes: set[str]) -> None:
        for gone in set(self.installed) - meshes:
            del self.installed[gone]

    async def reconcile(self, mesh: str, cert: ZoneCertificateSpec | None,
                                 now: dt.datetime) -> dt.datetime:
        """Install ``cert`` if it is for our key; request a new one when due. Returns when
        to look again.

        A renewal asks with a *pending* key (a second GlobalSecret) and keeps the
        current one until the new certificate arrives, so a zone restarted while the
        signer is unreachable still signs with its current intermediate."""
        current = await self._key(mesh, False) or await self._new_key(mesh, False)
        pending = await self._key(mesh, True)
        if cert is not None:
            parsed = x509.load_pem_x509_certificate(cert.certificate.encode())
            if pending is not None and public_der(parsed.public_key()) == public_der(
                    pending.public_key()):
                await self._promote(mesh, pending)
                current, pending = pending, None
            if public_der(parsed.public_key()) == public_der(current.public_key()):
                self._install(mesh, KeyPair(parsed, current), cert)
                lifetime = parsed.not_valid_after_utc - parsed.not_valid_before_utc
                renew_at = parsed.not_valid_after_utc - lifetime / 3
                if now < renew_at:
                    return renew_at
                pending = pending or await self._new_key(mesh, True)
        await self._request(mesh, pending or current)
        return now + dt.timedelta(minutes=5)

    def _install(self, mesh: str, ca: KeyPair, cert: ZoneCertificateSpec) -> None:
        issuer = Issuer(ca, ca.cert_pem() + cert.chain.encode(), cert.signer)
        if self.installed.get(mesh) != issuer:
            self.installed[mesh] = issuer
            log.info("zone %s: intermediate CA for mesh %s installed (signed by %s)",
                     self._zone, mesh, cert.signer or "the mesh root")

    async def _key(self, mesh: str, pending: bool) -> PrivateKey | None:
        name = zone_key_secret_name(mesh, pending)
        stored = await read_secret_json(self._manager, name)
        if stored is None:
            stored = await adopt_legacy(
                self._manager, name, legacy_zone_key_secret_name(mesh, pending),
                lambda res: res.labels.get(ZONE_KEY_LABEL) == mesh)
        if stored is None:
            return None
        loaded = serialization.load_pem_private_key(stored["key"].encode(), password=None)
        return loaded  # type: ignore[return-value]

    async def _new_key(self, mesh: str, pending: bool, key: PrivateKey | None = None
                       ) -> PrivateKey:
        key = key or new_key()
        pem = key.private_bytes(Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
        await self._manager.apply(secret_json(zone_key_secret_name(mesh, pending),
                                              {ZONE_KEY_LABEL: mesh}, {"key": pem}))
        return key

    async def _promote(self, mesh: str, pending: PrivateKey) -> None:
        """The pending key got its certificate: it becomes the current key."""
        await self._new_key(mesh, False, pending)
        with contextlib.suppress(NotFound):
            await self._manager.delete("GlobalSecret", zone_key_secret_name(mesh, True))

    async def _request(self, mesh: str, key: PrivateKey) -> None:
        with contextlib.suppress(NotFound):
            asked = (await self._manager.get("ZoneCertificateRequest", mesh)).spec
            if isinstance(asked, ZoneCertificateRequestSpec) and public_der(
                    x509.load_pem_x509_csr(asked.csr.encode()).public_key()) == public_der(
                    key.public_key()):
                return  # already asked with this key
        csr = new_csr(key, f"Gossamer zone {self._zone} mesh {mesh}")
        await self._manager.apply(Resource(
            type="ZoneCertificateRequest", name=mesh,
            spec=ZoneCertificateRequestSpec(mesh=mesh,
                                            csr=csr.public_bytes(Encoding.PEM).decode())))
        log.info("zone %s: requested an intermediate CA for mesh %s", self._zone, mesh)
