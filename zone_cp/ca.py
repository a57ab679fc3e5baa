"""The zone's certificate authority per mesh, and workload certificates from CSRs.

A standalone zone makes its own mesh root the first time a mesh needs one (ECDSA P-256,
ten years) and keeps it in its store as a GlobalSecret (``ca-<mesh>-<backend>``), a kind
that never leaves the control plane that holds it. Workload certificates are signed from
the agent's CSR with an identity the control plane decides: ``spiffe://<mesh>/<service>``
for each inbound service plus ``gossamer://<tag>/<value>`` for each inbound tag.

A federated zone instead signs with an intermediate the global issued from the zone's
CSR; until that arrives, signing raises ``CaUnavailable`` and the agent retries.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from gossamer.errors import GossamerError, NotFound
from gossamer.model.base import Resource
from gossamer.model.dataplane import DataplaneSpec
from gossamer.model.fields import duration_seconds
from gossamer.model.mesh import MeshSpec
from gossamer.model.secret import SecretSpec
from gossamer.pki.certs import KeyPair, new_root_ca, sign_leaf
from gossamer.resources import ResourceManager
from proxy.context import spiffe, tag_uri

ROOT_LIFETIME = dt.timedelta(days=3650)
DEFAULT_WORKLOAD_LIFETIME = dt.timedelta(hours=24)
CA_LABEL = "gossamer.io/ca"


class CaUnavailable(GossamerError):
    http_status = 503
    title = "certificate authority unavailable"
    retryable = True


@dataclass(frozen=True)
class Signed:
    chain_pem: bytes
    trust_bundle_pem: bytes
    not_after: dt.datetime


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


class ZoneCa:
    def __init__(self, manager: ResourceManager) -> None:
        self._manager = manager
        self._cache: dict[tuple[str, str], KeyPair] = {}
        self._lock = asyncio.Lock()

    async def _mesh(self, mesh: str) -> MeshSpec:
        res = await self._manager.get("Mesh", mesh)
        if not isinstance(res.spec, MeshSpec):
            raise TypeError(f"Mesh {mesh} has a {type(res.spec).__name__} spec")
        return res.spec

    def _backend_name(self, spec: MeshSpec) -> str:
        return spec.mtls.enabled_backend if spec.mtls and spec.mtls.enabled_backend else "none"

    async def issuer(self, mesh: str) -> KeyPair:
        """The CA that signs this mesh's workloads, created on first use."""
        backend = self._backend_name(await self._mesh(mesh))
        key = (mesh, backend)
        if key in self._cache:
            return self._cache[key]
        async with self._lock:
            if key not in self._cache:
                self._cache[key] = await self._load_or_create(mesh, backend)
        return self._cache[key]

    async def _load_or_create(self, mesh: str, backend: str) -> KeyPair:
        name = f"ca-{mesh}-{backend}"
        try:
            res = await self._manager.get("GlobalSecret", name)
            data = json.loads(res.spec.value())  # type: ignore[attr-defined]
            return KeyPair.from_pem(data["cert"].encode(), data["key"].encode())
        except NotFound:
            pass
        root = new_root_ca(f"Gossamer mesh {mesh}", dt.datetime.now(dt.UTC), ROOT_LIFETIME,
                           path_length=1)
        blob = json.dumps({"cert": root.cert_pem().decode(), "key": root.key_pem().decode()})
        await self._manager.apply(Resource(
            type="GlobalSecret", name=name, labels={CA_LABEL: mesh},
            spec=SecretSpec(data=base64.b64encode(blob.encode()).decode())))
        return root

    async def trust_bundle(self, mesh: str) -> bytes:
        return (await self.issuer(mesh)).cert_pem()

    async def sign(self, mesh: str, dataplane: DataplaneSpec,
                   csr: x509.CertificateSigningRequest,
                   now: dt.datetime | None = None) -> Signed:
        now = now or dt.datetime.now(dt.UTC)
        mesh_spec = await self._mesh(mesh)
        issuer = await self.issuer(mesh)
        cert = sign_leaf(issuer, csr, now, workload_lifetime(mesh_spec),
                         uris=workload_uris(mesh, dataplane), server=True, client=True)
        return Signed(chain_pem=cert.public_bytes(Encoding.PEM), trust_bundle_pem=issuer.cert_pem(),
                      not_after=cert.not_valid_after_utc)

