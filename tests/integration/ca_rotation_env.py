"""What the mesh CA rotation tests share: the ``cluster`` of the ingress tests (a global and
zones east and west; ``tests/integration/conftest.py``) with sidecars and east's ingress as
real processes, and a real OpenBao (the ``bao`` fixture, also in the conftest). ``backend``
runs in east; ``web`` in west calls it across zones through east's ingress and ``local`` in
east calls it in-zone. backend's inbound is TCP, so every request is a new connection and a
new mTLS handshake between sidecars: a sidecar that did not trust the peer's CA at any
moment would fail a request (``Load`` counts them). The rest read and change the mesh's CA
through the global's API (``Api``) and follow the MeshTrust's phases.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography import x509

from gossamer.model.meshtrust import MeshTrustSpec, TrustPhase
from gossamer.pki.certs import new_root_ca
from tests.integration.ingress_env import Cluster, free_port, ingress_process, sidecar
from tests.integration.test_agent_zone import DATAPLANE_YAML, http_backend
from tests.openbao import OpenBao
from tests.waiting import eventually
from zone_cp.app import ZoneControlPlane

MESH = "default"


PKI = "pki-mesh"


NOW = dt.datetime.now(dt.UTC)


# backend speaks TCP at its inbound: one connection, one mTLS handshake, per request.
TCP_DATAPLANE = DATAPLANE_YAML.replace("gossamer.io/protocol: http", "gossamer.io/protocol: tcp")


assert TCP_DATAPLANE != DATAPLANE_YAML


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass
class Api:
    """The global's HTTP API with the admin token: what `gossamer apply` would send."""

    url: str
    token: str

    async def put(self, doc: dict[str, Any]) -> httpx.Response:
        path = {"Mesh": "meshes", "Secret": "secrets"}[doc["type"]]
        where = (f"/meshes/{doc['mesh']}/{path}/{doc['name']}" if doc.get("mesh")
                 else f"/{path}/{doc['name']}")
        async with httpx.AsyncClient(base_url=self.url, timeout=10,
                                     headers={"authorization": f"Bearer {self.token}"}) as c:
            return await c.put(where, json=doc)

    async def ok(self, doc: dict[str, Any]) -> None:
        response = await self.put(doc)
        assert response.status_code in (200, 201), response.text

    async def get(self, path: str) -> Any:
        async with httpx.AsyncClient(base_url=self.url, timeout=10,
                                     headers={"authorization": f"Bearer {self.token}"}) as c:
            response = await c.get(path)
        assert response.status_code == 200, response.text
        return response.json()

    async def secret(self, name: str, data: bytes) -> None:
        await self.ok({"type": "Secret", "name": name, "mesh": MESH, "data": b64(data)})


def api_of(cluster: Cluster) -> Api:
    return Api(cluster.global_cp.api_url, cluster.global_cp.admin_token)


def mesh(enabled: str, vault_address: str, vault_mode: str = "intermediate") -> dict[str, Any]:
    return {"type": "Mesh", "name": MESH, "mtls": {"enabledBackend": enabled, "backends": [
        {"name": "ca-1", "type": "builtin"},
        {"name": "vault-1", "type": "vault", "conf": {
            "address": vault_address, "pki": PKI, "role": "workloads", "mode": vault_mode,
            "auth": {"token": {"secretRef": "vault-token"}},
            "tls": {"caCertSecretRef": "vault-ca"}}},
        {"name": "files", "type": "provided", "conf": {
            "cert": {"secretRef": "files-cert"}, "key": {"secretRef": "files-key"}}}]}}


async def vault_and_files(cluster: Cluster, bao: OpenBao) -> x509.Certificate:
    """The secrets the Mesh's vault-1 and files backends refer to; the files root."""
    api = api_of(cluster)
    await api.secret("vault-token", bao.create_token(["zones"]).encode())
    await api.secret("vault-ca", bao.ca_pem)
    files = new_root_ca("Gossamer test provided root", NOW, dt.timedelta(days=30))
    await api.secret("files-cert", files.cert_pem())
    # The key is a GlobalSecret: it stays at the global.
    async with httpx.AsyncClient(base_url=api.url, timeout=10, headers={
            "authorization": f"Bearer {api.token}"}) as client:
        response = await client.put("/global-secrets/files-key", json={
            "type": "GlobalSecret", "name": "files-key", "data": b64(files.key_pem())})
    assert response.status_code in (200, 201), response.text
    return files.cert


async def global_trust(cluster: Cluster) -> MeshTrustSpec:
    spec = (await cluster.global_manager.get("MeshTrust", MESH)).spec
    assert isinstance(spec, MeshTrustSpec)
    return spec


@dataclass
class Load:
    """Requests through each client sidecar's outbound, one connection each, until
    stopped; every failure is kept with the MeshTrust phase it happened in."""

    ports: dict[str, int]
    phase: str = "stable"
    ok: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def one(self, port: int) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"GET / HTTP/1.1\r\nhost: backend\r\nconnection: close\r\n\r\n")
            await writer.drain()
            async with asyncio.timeout(5):
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                return head + await reader.readexactly(length)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def run(self, name: str, port: int) -> None:
        while not self._stop.is_set():
            try:
                reply = await self.one(port)
                if not reply.startswith(b"HTTP/1.1 200") or b"hello" not in reply:
                    raise ValueError(f"unexpected reply {reply[:80]!r}")
                self.ok[name] = self.ok.get(name, 0) + 1
            except (OSError, ValueError, TimeoutError, asyncio.IncompleteReadError) as exc:
                self.failures.append(f"{name} during {self.phase}: {exc!r}")
            await asyncio.sleep(0.005)

    async def served(self, calls: int, timeout: float = 30.0) -> None:
        """Wait until every path has answered ``calls`` more requests."""
        before = dict(self.ok)
        await eventually(lambda: all(self.ok.get(k, 0) >= before.get(k, 0) + calls
                                     for k in self.ports),
                         timeout=timeout, what=f"{calls} more answered calls on each path")

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Load]:
        tasks = [asyncio.create_task(self.run(n, p)) for n, p in self.ports.items()]
        try:
            yield self
        finally:
            self._stop.set()
            await asyncio.gather(*tasks)


@dataclass
class Running:
    cluster: Cluster
    load: Load
    ingress_port: int


@contextlib.asynccontextmanager
async def mesh_with_traffic(cluster: Cluster) -> AsyncIterator[Running]:
    """backend in east, east's ingress, web in west and local in east calling backend."""
    token = await cluster.zone_token("east", ["ingress"],
                                     cluster.directory / "east-ingress.token")
    web_out, local_out, ingress_port = free_port(), free_port(), free_port()
    async with http_backend(b"hello") as app, \
            await sidecar(cluster, cluster.east, "backend-1", "backend", app,
                          dataplane=TCP_DATAPLANE), \
            ingress_process(cluster.directory / "ingress", cluster.east, token, ingress_port), \
            await sidecar(cluster, cluster.west, "web-1", "web", free_port(), web_out,
                          dataplane=TCP_DATAPLANE), \
            await sidecar(cluster, cluster.east, "local-1", "local", free_port(), local_out,
                          dataplane=TCP_DATAPLANE):
        load = Load({"web (west -> east)": web_out, "local (east)": local_out})
        for port in (web_out, local_out):
            await eventually(lambda p=port: _answers(load, p), timeout=90,
                             what=f"backend through the outbound at {port}")
        yield Running(cluster, load, ingress_port)


async def _answers(load: Load, port: int) -> bool:
    try:
        return b"hello" in await load.one(port)
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        return False


async def rotated_to(cluster: Cluster, backend: str, timeout: float = 180.0) -> MeshTrustSpec:
    """Wait until the MeshTrust is stable on ``backend`` and every zone reports every
    sidecar serving its bundle with a certificate on its roots."""

    async def done() -> bool:
        overview = await api_of(cluster).get(f"/meshes/{MESH}/_overview")
        trust = overview["trust"]
        zones = {z["zone"]: z for z in overview["zones"]}
        ready = (trust["phase"] == "stable" and trust["signer"]["backend"] == backend
                 and set(zones) == {"east", "west"}
                 and all(z["bundleCurrent"] and z["certificatesOnOldRoots"] == 0
                         and "pending" not in z["certificates"] for z in zones.values()))
        if not ready:  # the timeout reports the last overview
            raise AssertionError(json.dumps(overview, indent=1))
        return True

    await eventually(done, timeout=timeout, interval=0.2,
                     what=f"the mesh CA rotated to {backend}")
    return await global_trust(cluster)


async def sidecar_chains(zone: ZoneControlPlane) -> dict[str, list[x509.Certificate]]:
    """Each sidecar's certificate chain as its agent last reported it."""
    return {s.name: list(s.certificate_chain) for s in zone.agents.sessions_of(MESH)}


def roots_of(trust: MeshTrustSpec) -> list[x509.Certificate]:
    return [x509.load_pem_x509_certificate(p.encode()) for p in trust.signer.roots]


async def _stable_on(cluster: Cluster, backend: str) -> MeshTrustSpec | None:
    with contextlib.suppress(Exception):
        trust = await global_trust(cluster)
        if trust.phase is TrustPhase.STABLE and trust.signer.backend == backend:
            return trust
    return None


async def trust_saying(cluster: Cluster, text: str, timeout: float) -> MeshTrustSpec:
    """The global's MeshTrust once its message mentions ``text``."""

    async def says() -> MeshTrustSpec | None:
        trust = await global_trust(cluster)
        return trust if text in trust.message else None

    return await eventually(says, timeout=timeout, interval=0.5,
                            what=f"the MeshTrust saying {text!r}")

