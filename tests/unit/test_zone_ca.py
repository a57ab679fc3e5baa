"""The mesh CA on one store, as a standalone zone runs it: the controller that owns the
roots (``MeshCaController``) and the zone's CA (``ZoneCa``) with a set of sidecars.

The sidecars are a small in-memory stand-in for ``zone_cp.agents.AgentRegistry`` (the
real one is exercised with real agents in tests/integration/test_ca_rotation.py): they
take the bundle and renew requests the zone CA sends and report what a real agent would.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from authority.mesh_ca import MeshCaController
from gossamer.errors import NotFound
from gossamer.model.dataplane import DataplaneSpec
from gossamer.model.meshtrust import MeshTrustSpec, TrustPhase
from gossamer.model.registry import parse_document
from gossamer.model.zonetrust import ZoneTrustStatusSpec
from gossamer.pki.certs import bundle_digest, chain_root, fingerprint, new_csr, new_key, uri_sans
from gossamer.pki.names import root_secret_name, zone_key_secret_name
from gossamer.resources import ResourceManager
from gossamer.store.memory import MemoryStore
from zone_cp.ca import CaUnavailable, Signed, ZoneCa, workload_uris
from zone_cp.ca_keeper import ZoneCaKeeper
from zone_cp.intermediates import Issuer
from zone_cp.rollout import RENEW_PACE, RENEW_PER_PASS, Rollout, Sidecars, SidecarView

NOW = dt.datetime(2026, 11, 26, tzinfo=dt.UTC)

DP = parse_document({
    "type": "Dataplane", "name": "backend-1", "mesh": "default",
    "networking": {"address": "10.0.0.7", "inbound": [
        {"port": 18080, "tags": {"gossamer.io/service": "backend", "version": "v1"}}]}})
# What backend-1's token vouches for (a token binding the version tag).
IDENTITY = workload_uris("default", "backend", {"version": "v1"})


def mesh_doc(enabled: str = "ca-1", expiration: str = "6h") -> dict[str, object]:
    return {"type": "Mesh", "name": "default", "mtls": {"enabledBackend": enabled, "backends": [
        {"name": "ca-1", "type": "builtin", "dpCert": {"rotation": {"expiration": expiration}}},
        {"name": "ca-2", "type": "builtin"}]}}


@dataclass
class FakeSidecar:
    node_id: str
    certificate_chain: list[x509.Certificate] = field(default_factory=list)
    trust_bundle_digest: str = ""
    renewals_asked: int = 0
    bundles_resent: int = 0

    @property
    def certificate_fingerprint(self) -> str:
        return fingerprint(self.certificate_chain[0]) if self.certificate_chain else ""


class FakeSidecars:
    def __init__(self) -> None:
        self.changed = asyncio.Event()
        self.bundles: dict[str, bytes] = {}
        self.members: list[FakeSidecar] = []

    def set_trust_bundle(self, mesh: str, pem: bytes) -> None:
        self.bundles[mesh] = pem

    def resend_trust_bundle(self, mesh: str, predicate: Callable[[SidecarView], bool]) -> int:
        chosen = [s for s in self.members if predicate(s)]
        for s in chosen:
            s.bundles_resent += 1
        return len(chosen)

    def renew(self, mesh: str, predicate: Callable[[SidecarView], bool]) -> int:
        chosen = [s for s in self.members if predicate(s)]
        for s in chosen:
            s.renewals_asked += 1
        return len(chosen)

    def sessions_of(self, mesh: str) -> Sequence[SidecarView]:
        return self.members


class OneReplica:
    """A zone CP without replicas: its signer (``ZoneCa``) and its keeper, both on the
    one store; a pass is the keeper's then the signer's (each reads what the other
    wrote)."""

    def __init__(self, manager: ResourceManager, sidecars: Sidecars) -> None:
        self.signer = ZoneCa(manager, "west", sidecars)
        self.keeper = ZoneCaKeeper(manager, self.signer, "west")

    async def reconcile(self, now: dt.datetime) -> dt.datetime:
        first = await self.keeper.reconcile(now)
        return min(first, await self.signer.reconcile(now))

    async def sign(self, mesh: str, uris: Sequence[str], csr: x509.CertificateSigningRequest,
                   now: dt.datetime | None = None) -> Signed:
        return await self.signer.sign(mesh, uris, csr, now)

    def issuer(self, mesh: str) -> Issuer:
        return self.signer.issuer(mesh)

    @property
    def rollout(self) -> Rollout:
        return self.signer.rollout

    @property
    def startup_grace(self) -> float:
        return self.keeper.startup_grace

    @startup_grace.setter
    def startup_grace(self, value: float) -> None:
        self.keeper.startup_grace = value


class Standalone:
    def __init__(self) -> None:
        self.manager = ResourceManager(MemoryStore())
        self.sidecars = FakeSidecars()
        self.controller = MeshCaController(self.manager, local_zone="west")
        self.ca = OneReplica(self.manager, self.sidecars)

    async def settle(self, rounds: int = 4) -> None:
        """Run both sides until nothing changes (each pass reads what the other wrote)."""
        for _ in range(rounds):
            await self.controller.reconcile(NOW)
            await self.ca.reconcile(NOW)

    async def trust(self) -> MeshTrustSpec:
        spec = (await self.manager.get("MeshTrust", "default")).spec
        assert isinstance(spec, MeshTrustSpec)
        return spec

    async def status(self) -> ZoneTrustStatusSpec:
        spec = (await self.manager.get("ZoneTrustStatus", "default")).spec
        assert isinstance(spec, ZoneTrustStatusSpec)
        return spec

    async def issue(self, sidecar: FakeSidecar) -> None:
        """What an agent does: sign, take the chain and the bundle, report."""
        assert isinstance(DP.spec, DataplaneSpec)
        signed = await self.ca.sign("default", IDENTITY, new_csr(new_key(), "x"), now=NOW)
        sidecar.certificate_chain = x509.load_pem_x509_certificates(signed.chain_pem)
        sidecar.trust_bundle_digest = bundle_digest(signed.trust_bundle_pem)

    async def connect(self, *names: str) -> list[FakeSidecar]:
        """Sidecars that registered and got their first certificate."""
        members = [FakeSidecar(f"default.{n}") for n in names]
        self.sidecars.members = members
        for s in members:
            await self.issue(s)
        return members

    def take_bundle(self) -> None:
        for s in self.sidecars.members:
            s.trust_bundle_digest = bundle_digest(self.sidecars.bundles["default"])


async def standalone(expiration: str = "6h") -> Standalone:
    zone = Standalone()
    await zone.manager.apply(parse_document(mesh_doc(expiration=expiration)))
    await zone.settle()
    return zone


async def test_workload_certificate_identity_lifetime_and_chain() -> None:
    zone = await standalone("6h")
    assert isinstance(DP.spec, DataplaneSpec)
    # The CSR asks for someone else's identity: the CA signs what the token vouches for.
    csr = new_csr(new_key(), "x", ["spiffe://default/admin"])
    signed = await zone.ca.sign("default", IDENTITY, csr, now=NOW)
    chain = x509.load_pem_x509_certificates(signed.chain_pem)
    assert uri_sans(chain[0]) == ["gossamer://version/v1", "spiffe://default/backend"]
    assert signed.not_after == NOW + dt.timedelta(hours=6)
    roots = x509.load_pem_x509_certificates(signed.trust_bundle_pem)
    assert len(chain) == 2  # leaf and the zone's intermediate
    assert chain_root(chain, roots) is not None
    # The root's key stays with the controller; the zone signs with its intermediate.
    stored = await zone.manager.get("GlobalSecret", root_secret_name("default", "ca-1", 0))
    assert stored.labels == {"gossamer.io/ca": "default"}


async def test_no_certificate_before_the_mesh_has_a_ca() -> None:
    zone = Standalone()
    await zone.manager.apply(parse_document(mesh_doc()))
    assert isinstance(DP.spec, DataplaneSpec)
    try:
        await zone.ca.sign("default", IDENTITY, new_csr(new_key(), "x"), now=NOW)
    except CaUnavailable as exc:
        assert "does not know the CA of mesh 'default'" in exc.detail
    else:
        raise AssertionError("signed without a MeshTrust")


async def test_the_root_survives_a_new_controller_and_ca() -> None:
    zone = await standalone()
    first = (await zone.trust()).bundle_digest
    again = Standalone()
    again.manager = zone.manager
    again.controller = MeshCaController(zone.manager, local_zone="west")
    again.ca = OneReplica(zone.manager, again.sidecars)
    await again.settle()
    assert (await again.trust()).bundle_digest == first


async def test_a_rotation_walks_every_phase_with_the_sidecars() -> None:
    zone = await standalone()
    one, two = await zone.connect("a", "b")
    await zone.settle()
    old = await zone.trust()
    assert old.phase is TrustPhase.STABLE
    assert (await zone.status()).dataplanes_with_bundle == 2

    await zone.manager.apply(parse_document(mesh_doc(enabled="ca-2")))
    await zone.settle()
    adding = await zone.trust()
    assert adding.phase is TrustPhase.ADDING_TRUST
    assert adding.incoming is not None and adding.incoming.backend == "ca-2"
    # The bundle with both roots went to the sidecars; until they serve it, no progress.
    assert bundle_digest(zone.sidecars.bundles["default"]) == adding.bundle_digest
    assert (await zone.status()).dataplanes_with_bundle == 0
    assert "waiting for every sidecar" in adding.message

    zone.take_bundle()
    await zone.settle()
    reissuing = await zone.trust()
    assert reissuing.phase is TrustPhase.REISSUING
    assert reissuing.signer.backend == "ca-2"
    # The zone got an intermediate from the new root and asked both sidecars to renew.
    status = await zone.status()
    assert status.intermediate_root in reissuing.signer.fingerprints
    assert one.renewals_asked == 1 and two.renewals_asked == 1
    assert status.certificates == {old.signer.fingerprints[0]: 2}

    for s in (one, two):
        await zone.issue(s)
    await zone.settle()
    done = await zone.trust()
    assert done.phase is TrustPhase.STABLE and done.retiring is None
    assert [fingerprint(c) for c in x509.load_pem_x509_certificates(
        done.trust_bundle.encode())] == done.signer.fingerprints
    new_root = x509.load_pem_x509_certificate(done.signer.roots[0].encode())
    for s in (one, two):
        root = chain_root(s.certificate_chain, [new_root])
        assert root is not None
    # The retired builtin root's key is gone.
    try:
        await zone.manager.get("GlobalSecret", "ca-default-ca-1")
    except NotFound:
        pass
    else:
        raise AssertionError("the retired root's key is still stored")


async def test_regenerating_a_builtin_root_rotates_to_a_new_generation() -> None:
    zone = await standalone()
    before = await zone.trust()
    await zone.controller.request_rotation("default")
    await zone.settle()
    trust = await zone.trust()
    # No sidecars: every phase passes at once and the new generation signs.
    assert trust.phase is TrustPhase.STABLE
    assert trust.signer.generation == 1
    assert trust.signer.fingerprints != before.signer.fingerprints
    root = x509.load_pem_x509_certificate(trust.signer.roots[0].encode())
    assert root.public_bytes(Encoding.PEM).decode() in trust.trust_bundle


async def test_a_rotation_resumes_after_both_sides_restart_in_every_phase() -> None:
    zone = await standalone()
    [sidecar] = await zone.connect("a")
    await zone.settle()
    old_root = (await zone.trust()).signer.fingerprints[0]

    def restart() -> None:
        """New controller and zone CA objects on the same store: nothing in memory."""
        zone.controller = MeshCaController(zone.manager, local_zone="west")
        zone.ca = OneReplica(zone.manager, zone.sidecars)

    await zone.manager.apply(parse_document(mesh_doc(enabled="ca-2")))
    await zone.settle(rounds=1)
    assert (await zone.trust()).phase is TrustPhase.ADDING_TRUST
    restart()
    await zone.settle()
    assert (await zone.trust()).phase is TrustPhase.ADDING_TRUST  # still waiting on a
    zone.take_bundle()
    await zone.settle()
    assert (await zone.trust()).phase is TrustPhase.REISSUING
    restart()
    await zone.settle()
    trust = await zone.trust()
    assert trust.phase is TrustPhase.REISSUING
    # The restarted zone CA asked again (its memory of asking is gone) and got nowhere
    # until the sidecar renewed.
    assert sidecar.renewals_asked == 2
    await zone.issue(sidecar)
    await zone.settle()
    done = await zone.trust()
    assert done.phase is TrustPhase.STABLE and done.signer.backend == "ca-2"
    in_bundle = [fingerprint(c) for c in x509.load_pem_x509_certificates(
        done.trust_bundle.encode())]
    assert old_root not in in_bundle and in_bundle == done.signer.fingerprints


async def test_a_restarted_zone_holds_its_report_until_its_sidecars_are_back() -> None:
    zone = await standalone()
    await zone.connect("a", "b")
    await zone.settle()
    await zone.manager.apply(parse_document(mesh_doc(enabled="ca-2")))
    await zone.settle(rounds=1)
    assert (await zone.trust()).phase is TrustPhase.ADDING_TRUST
    # The zone CP restarts; no sidecar has registered again yet.
    zone.sidecars = FakeSidecars()
    zone.ca = OneReplica(zone.manager, zone.sidecars)
    await zone.settle()
    # Zero of zero would look done: the report of two sidecars stands instead.
    assert (await zone.status()).dataplanes == 2
    assert (await zone.trust()).phase is TrustPhase.ADDING_TRUST
    # Past the grace, the zone reports what it has.
    zone.ca.startup_grace = 0
    await zone.settle()
    assert (await zone.status()).dataplanes == 0


async def test_a_restart_while_the_intermediate_is_due_keeps_the_current_key() -> None:
    zone = await standalone()
    assert isinstance(DP.spec, DataplaneSpec)
    later = NOW + dt.timedelta(days=6)  # past the renewal point of a 7-day intermediate
    await zone.ca.reconcile(later)  # asks with a pending key; the signer is "down"
    assert await zone.manager.get("GlobalSecret", zone_key_secret_name("default", True))
    restarted = OneReplica(zone.manager, zone.sidecars)
    await restarted.reconcile(later)
    # The current intermediate and its key still sign after the restart.
    signed = await restarted.sign("default", IDENTITY, new_csr(new_key(), "x"), now=later)
    assert x509.load_pem_x509_certificates(signed.chain_pem)[1] == (
        restarted.issuer("default").ca.cert)
    # The signer comes back: the pending key gets its certificate and replaces the old.
    await zone.controller.reconcile(later)
    await restarted.reconcile(later)
    try:
        await zone.manager.get("GlobalSecret", zone_key_secret_name("default", True))
    except NotFound:
        pass
    else:
        raise AssertionError("the pending key was not promoted")
    new_ca = restarted.issuer("default").ca
    assert new_ca.cert.not_valid_after_utc > later + dt.timedelta(days=6)


async def test_a_sidecar_that_reports_another_bundle_gets_it_again() -> None:
    zone = await standalone()
    [sidecar] = await zone.connect("a")
    sidecar.trust_bundle_digest = "0" * 64  # it refused or lost the push
    await zone.settle(rounds=1)
    assert sidecar.bundles_resent == 0  # first seen: give it time
    node = sidecar.node_id
    digest, seen = zone.ca.rollout.resent[node]
    zone.ca.rollout.resent[node] = (digest, seen - 11)
    await zone.settle(rounds=1)
    assert sidecar.bundles_resent == 1
    sidecar.trust_bundle_digest = (await zone.trust()).bundle_digest
    await zone.settle(rounds=1)
    assert node not in zone.ca.rollout.resent


async def test_switching_back_during_reissuing_ends_on_a_new_generation() -> None:
    zone = await standalone()
    [sidecar] = await zone.connect("a")
    await zone.settle()
    first = (await zone.trust()).signer
    await zone.manager.apply(parse_document(mesh_doc(enabled="ca-2")))
    await zone.settle(rounds=1)
    zone.take_bundle()
    await zone.settle()
    assert (await zone.trust()).phase is TrustPhase.REISSUING
    # Back to ca-1 while ca-2's certificates are going out: ca-2 finishes first.
    await zone.manager.apply(parse_document(mesh_doc(enabled="ca-1")))
    await zone.issue(sidecar)
    await zone.settle()
    trust = await zone.trust()
    assert trust.signer.backend == "ca-2" and trust.phase is not TrustPhase.REISSUING
    assert trust.generations == {"ca-1": 1}
    # Then back to ca-1, under a new root: the retired generation 0's key is gone.
    for _ in range(3):
        zone.take_bundle()
        await zone.issue(sidecar)
        await zone.settle()
    trust = await zone.trust()
    assert trust.phase is TrustPhase.STABLE, trust.message
    assert (trust.signer.backend, trust.signer.generation) == ("ca-1", 1)
    assert trust.signer.fingerprints != first.fingerprints
    assert chain_root(sidecar.certificate_chain, [
        x509.load_pem_x509_certificate(trust.signer.roots[0].encode())]) is not None


async def test_renewals_are_asked_in_paced_batches() -> None:
    zone = await standalone()
    sidecars = await zone.connect(*(f"s{i}" for i in range(RENEW_PER_PASS + 30)))
    await zone.controller.request_rotation("default")
    await zone.settle(rounds=2)  # adding-trust: the zone pushes both roots
    zone.take_bundle()
    await zone.ca.reconcile(NOW)  # reports that every sidecar has both roots
    await zone.controller.reconcile(NOW)  # -> reissuing, new intermediate signed
    assert (await zone.trust()).phase is TrustPhase.REISSUING
    next_check = await zone.ca.reconcile(NOW)
    assert sum(s.renewals_asked for s in sidecars) == RENEW_PER_PASS
    assert next_check <= NOW + dt.timedelta(seconds=RENEW_PACE)  # the rest soon
    await zone.ca.reconcile(NOW)
    assert sorted({s.renewals_asked for s in sidecars}) == [1]  # everyone once, no repeats
