"""A federated or standalone zone's intermediate CA per mesh: its key, its request, its
certificate.

The zone makes its own key per mesh (a GlobalSecret named by
``gossamer.pki.names.zone_key_secret_name``: it stays in the zone's store and is never
synced to the global), publishes a ``ZoneCertificateRequest`` (the CSR) and the owner of
the mesh roots signs a ``ZoneCertificate`` for that key. A third of the way before
expiry it asks again with a *pending* key (a second GlobalSecret) and keeps the current
key and certificate until the new certificate arrives, so a zone restarted while the
signer is unreachable still issues. A key stored under its old name
(``zone-ca-key-<mesh>[-next]``, where mesh ``a``'s pending key was mesh ``a-next``'s
current one) is moved to the new name if its mesh label says it is this mesh's.

Two sides, for zone CP replicas on one store: ``Intermediates`` makes the keys, the
requests and the rotations, and runs on the zone's leader only (``zone_cp.ca_keeper``,
writing through the fenced store); ``stored_issuer`` is how every replica finds what
signs its workloads (``zone_cp.ca``): the stored certificate with whichever stored key
(current or pending) it is for, read only.
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


async def stored_issuer(manager: ResourceManager, mesh: str,
                        cert: ZoneCertificateSpec | None) -> Issuer | None:
    """What signs ``mesh``'s workloads: ``cert`` with the stored key it is for (the
    current one, or the pending one the keeper has not promoted yet); None if there is
    no certificate, or it is for neither key. Reads only."""
    if cert is None:
        return None
    parsed = x509.load_pem_x509_certificate(cert.certificate.encode())
    for pending in (False, True):
        stored = await read_secret_json(manager, zone_key_secret_name(mesh, pending))
        if stored is None:
            continue
        key = _load_key(stored["key"])
        if public_der(parsed.public_key()) == public_der(key.public_key()):
            pair = KeyPair(parsed, key)
            return Issuer(pair, pair.cert_pem() + cert.chain.encode(), cert.signer)
    return None


def _load_key(pem: str) -> PrivateKey:
    loaded = serialization.load_pem_private_key(pem.encode(), password=None)
    return loaded  # type: ignore[return-value]


class Intermediates:
    """The keys, requests and rotations of the zone's intermediates: the leader's."""

    def __init__(self, manager: ResourceManager, zone: str) -> None:
        self._manager = manager
        self._zone = zone

    async def reconcile(self, mesh: str, cert: ZoneCertificateSpec | None,
                        now: dt.datetime) -> dt.datetime:
        """Promote the pending key once ``cert`` is for it; request a new certificate
        when due. Returns when to look again.

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
                lifetime = parsed.not_valid_after_utc - parsed.not_valid_before_utc
                renew_at = parsed.not_valid_after_utc - lifetime / 3
                if now < renew_at:
                    return renew_at
                pending = pending or await self._new_key(mesh, True)
        await self._request(mesh, pending or current)
        return now + dt.timedelta(minutes=5)

    async def _key(self, mesh: str, pending: bool) -> PrivateKey | None:
        name = zone_key_secret_name(mesh, pending)
        stored = await read_secret_json(self._manager, name)
        if stored is None:
            stored = await adopt_legacy(
                self._manager, name, legacy_zone_key_secret_name(mesh, pending),
                lambda res: res.labels.get(ZONE_KEY_LABEL) == mesh)
        if stored is None:
            return None
        return _load_key(stored["key"])

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
