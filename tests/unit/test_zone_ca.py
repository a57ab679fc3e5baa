"""The zone's CA: a mesh root made once and kept, workload identities from the Dataplane."""

from __future__ import annotations

import datetime as dt

from cryptography import x509

from gossamer.model.base import parse_document
from gossamer.model.dataplane import DataplaneSpec
from gossamer.pki.certs import new_csr, new_key, uri_sans
from gossamer.resources import ResourceManager
from gossamer.store.memory import MemoryStore
from zone_cp.ca import ZoneCa

NOW = dt.datetime(2026, 11, 26, tzinfo=dt.UTC)

DP = parse_document({
    "type": "Dataplane", "name": "backend-1", "mesh": "default",
    "networking": {"address": "10.0.0.7", "inbound": [
        {"port": 18080, "tags": {"gossamer.io/service": "backend", "version": "v1"}}]}})


async def manager_with_mesh(expiration: str = "6h") -> ResourceManager:
    manager = ResourceManager(MemoryStore())
    await manager.apply(parse_document({
        "type": "Mesh", "name": "default", "mtls": {"enabledBackend": "ca-1", "backends": [
            {"name": "ca-1", "type": "builtin",
             "dpCert": {"rotation": {"expiration": expiration}}}]}}))
    return manager


async def test_workload_certificate_identity_and_lifetime() -> None:
    manager = await manager_with_mesh("6h")
    ca = ZoneCa(manager, "west", federated=False)
    assert isinstance(DP.spec, DataplaneSpec)
    # The CSR asks for someone else's identity: the CA decides from the Dataplane.
    csr = new_csr(new_key(), "x", ["spiffe://default/admin"])
    signed = await ca.sign("default", DP.spec, csr, now=NOW)
    leaf = x509.load_pem_x509_certificate(signed.chain_pem)
    assert uri_sans(leaf) == ["gossamer://version/v1", "spiffe://default/backend"]
    assert signed.not_after == NOW + dt.timedelta(hours=6)
    root = x509.load_pem_x509_certificate(signed.trust_bundle_pem)
    leaf.verify_directly_issued_by(root)


async def test_the_root_is_made_once_and_survives_a_new_ca_object() -> None:
    manager = await manager_with_mesh()
    first = await ZoneCa(manager, "west", federated=False).trust_bundle("default")
    again = await ZoneCa(manager, "west", federated=False).trust_bundle("default")
    assert first == again
    stored = await manager.get("GlobalSecret", "ca-default-ca-1")
    assert stored.labels == {"gossamer.io/ca": "default"}
