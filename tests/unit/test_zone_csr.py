"""A zone's CSR at the control plane owning the mesh roots (issue 10 point 8): a weak or
foreign key gets no intermediate, and the intermediate's subject is the signer's.

Runs the real ``MeshCaController`` on one store, as a standalone zone does: the zone's
``ZoneCertificateRequest`` is stored as the sync would store it.
"""

from __future__ import annotations

import datetime as dt
import logging

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from authority.mesh_ca import MeshCaController
from gossamer.errors import NotFound
from gossamer.model.base import Resource
from gossamer.model.registry import parse_document
from gossamer.model.zonecertificate import ZoneCertificateRequestSpec, ZoneCertificateSpec
from gossamer.pki.names import zone_certificate_name
from gossamer.resources import ResourceManager
from gossamer.store.memory import MemoryStore

NOW = dt.datetime(2026, 11, 26, tzinfo=dt.UTC)


async def ask(manager: ResourceManager, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
              ) -> None:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "evil")])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    await manager.apply(Resource(type="ZoneCertificateRequest", name="default", spec=(
        ZoneCertificateRequestSpec(mesh="default",
                                   csr=csr.public_bytes(Encoding.PEM).decode()))))


async def test_a_weak_zone_key_gets_no_intermediate_and_a_good_one_gets_ours(
        caplog: pytest.LogCaptureFixture) -> None:
    manager = ResourceManager(MemoryStore())
    await manager.apply(parse_document({"type": "Mesh", "name": "default", "mtls": {
        "enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]}}))
    controller = MeshCaController(manager, local_zone="west")
    await controller.reconcile(NOW)
    await ask(manager, rsa.generate_private_key(public_exponent=65537, key_size=1024))
    with caplog.at_level(logging.WARNING, logger="authority.mesh_ca"):
        await controller.reconcile(NOW)
    with pytest.raises(NotFound):
        await manager.get("ZoneCertificate", zone_certificate_name("west", "default"))
    assert any("the CSR's key is RSA-1024" in r.getMessage() for r in caplog.records)

    await ask(manager, ec.generate_private_key(ec.SECP384R1()))
    await controller.reconcile(NOW)
    signed = (await manager.get("ZoneCertificate",
                                zone_certificate_name("west", "default"))).spec
    assert isinstance(signed, ZoneCertificateSpec)
    cert = x509.load_pem_x509_certificate(signed.certificate.encode())
    assert cert.subject.rfc4514_string() == "CN=Gossamer zone west mesh default,O=Gossamer"
