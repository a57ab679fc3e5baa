"""A mesh's CA when its source fails, across two zones, against a real OpenBao (harness in
``tests/integration/ca_rotation_env.py``).

- a Vault in ``issue`` mode that stops answering: traffic keeps flowing on the
  certificates already out, the zones report why they cannot issue (ZoneTrustStatus,
  ``gossamer inspect meshes``, metrics), and a renewal succeeds once Vault is back;
- bad input at the global's API: a provided CA that is not a CA, a key that does not match,
  an expired root are refused naming the problem, and a Vault address that does not
  answer is reported while the previous CA keeps signing.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
from cryptography import x509

from gossamer.model.meshtrust import TrustPhase
from gossamer.model.secret import SecretSpec
from gossamer.pki.certs import chain_root, new_csr, new_key, new_leaf, new_root_ca
from tests.cluster import sample, scrape
from tests.integration.ca_rotation_env import (
    MESH,
    NOW,
    _stable_on,
    api_of,
    b64,
    mesh,
    mesh_with_traffic,
    roots_of,
    rotated_to,
    sidecar_chains,
    trust_saying,
    vault_and_files,
)
from tests.integration.ingress_env import Cluster, free_port
from tests.openbao import OpenBao
from tests.waiting import eventually
from zone_cp.app import ZoneControlPlane
from zone_cp.ca import workload_uris


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

