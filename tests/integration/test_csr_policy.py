"""What a CSR can get signed (issue 10 point 8), through the real gRPC agent API of an
in-process standalone zone CP: only EC P-256/P-384, Ed25519 or RSA >= 2048 keys, each
other key refused with INVALID_ARGUMENT naming it; the leaf's subject is the signer's,
never the CSR's.

The client speaks the agent's protocol (a Session that registers a Dataplane, then
SignCertificate with the same token), so no Envoy is needed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from authority.token_authority import TokenAuthority
from gossamer.pki.certs import uri_sans
from gossamer.settings import ZoneSettings
from gossamer.tokens import DATAPLANE
from sync.v1 import agent_pb2, agent_pb2_grpc
from tests.waiting import eventually
from zone_cp.app import ZoneControlPlane

MESH = "default"


def csr_pem(key: object, subject: str = "web-1") -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(
        key, algorithm)  # type: ignore[arg-type]
    return csr.public_bytes(Encoding.PEM)


class Sidecar:
    """A registered Dataplane ``web-1`` (service web) and its token, on a live Session."""

    def __init__(self, channel: grpc.aio.Channel, token: str) -> None:
        self.stub = agent_pb2_grpc.AgentStub(channel)
        self.auth = (("authorization", f"Bearer {token}"),)
        self.session = self.stub.Session(metadata=self.auth)

    async def register(self) -> None:
        doc = {"type": "Dataplane", "mesh": MESH, "name": "web-1", "networking": {
            "address": "127.0.0.1", "inbound": [
                {"port": 20001, "servicePort": 20002, "tags": {"gossamer.io/service": "web"}}]}}
        await self.session.write(agent_pb2.AgentMessage(register_dataplane_json=json.dumps(doc)))
        first = await asyncio.wait_for(self.session.read(), 10)
        assert first.WhichOneof("message") == "registered", first

    async def sign(self, pem: bytes) -> agent_pb2.SignResponse:
        request = agent_pb2.SignRequest(mesh=MESH, dataplane="web-1", csr_pem=pem)
        return await self.stub.SignCertificate(request, metadata=self.auth, timeout=10)

    async def refusal(self, pem: bytes) -> tuple[grpc.StatusCode, str]:
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await self.sign(pem)
        return exc.value.code(), exc.value.details() or ""


@pytest.fixture
async def sidecar(tmp_path: Path) -> AsyncIterator[Sidecar]:
    cp = ZoneControlPlane(ZoneSettings(zone="lab", data_dir=tmp_path / "zone",
                                       api_addr="127.0.0.1:0", xds_addr="127.0.0.1:0",
                                       store="sqlite"))
    await cp.start()
    try:
        assert cp.xds is not None
        token, _ = await TokenAuthority(cp.manager, DATAPLANE, MESH).issue("web", 600)
        ca = (cp.settings.directory / "tls" / "ca.pem").read_bytes()
        async with grpc.aio.secure_channel(f"127.0.0.1:{cp.xds.port}",
                                           grpc.ssl_channel_credentials(ca)) as channel:
            peer = Sidecar(channel, token)
            await peer.register()

            async def signs() -> bool:  # the zone's first intermediate is on its way
                try:
                    await peer.sign(csr_pem(ec.generate_private_key(ec.SECP256R1())))
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc
                    return False
                return True

            await eventually(signs, timeout=20, what="the zone CA to sign")
            yield peer
            peer.session.cancel()
    finally:
        await cp.stop()


async def test_weak_and_foreign_keys_are_refused_naming_the_key(sidecar: Sidecar) -> None:
    cases = [
        (rsa.generate_private_key(public_exponent=65537, key_size=1024), "RSA-1024"),
        (dsa.generate_private_key(key_size=2048), "DSA-2048"),
        (ec.generate_private_key(ec.SECP521R1()), "EC secp521r1"),
    ]
    for key, named in cases:
        code, details = await sidecar.refusal(csr_pem(key))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (named, code, details)
        assert f"the CSR's key is {named}" in details, details
        assert "P-256" in details and "2048" in details, details


async def test_accepted_keys_get_the_signers_subject_not_the_csrs(sidecar: Sidecar) -> None:
    keys = [ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP384R1()),
            ed25519.Ed25519PrivateKey.generate(),
            rsa.generate_private_key(public_exponent=65537, key_size=2048)]
    for key in keys:
        answer = await sidecar.sign(csr_pem(key, subject="evil"))
        leaf = x509.load_pem_x509_certificates(answer.certificate_chain_pem)[0]
        assert "evil" not in leaf.subject.rfc4514_string()
        assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME) == []
        assert uri_sans(leaf) == ["spiffe://default/web"]
