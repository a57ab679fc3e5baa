"""Changing a mesh's CA while traffic flows, across two zones, against a real OpenBao
(harness in ``tests/integration/ca_rotation_env.py``).

- builtin → vault (intermediate mode) → provided, under continuous load on both paths:
  not one request fails, the MeshTrust goes through adding-trust and reissuing back to
  stable, and at the end every sidecar certificate, every zone intermediate and the
  certificate backend presents through the ingress chain to the provided root only; the
  retired builtin root's key is gone;
- a rotation held by outages (a zone CP down, Vault not answering) carries on from its
  stored phase across restarts of the global, without a failed request.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from cryptography import x509

from gossamer.model.meshtrust import MeshTrustSpec, TrustPhase
from gossamer.model.zonecertificate import ZoneCertificateSpec
from gossamer.pki.certs import chain_root, fingerprint
from gossamer.store.follow import follow
from tests.integration.ca_rotation_env import (
    MESH,
    Load,
    _stable_on,
    api_of,
    mesh,
    mesh_with_traffic,
    roots_of,
    rotated_to,
    sidecar_chains,
    trust_saying,
    vault_and_files,
)
from tests.integration.ingress_env import Cluster, server_certificate
from tests.openbao import OpenBao
from tests.waiting import eventually


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

