"""The zone CA and leftovers of zone CP replicas on one store, without sockets.

Two replicas of zone ``west`` on one memory store, with the mesh CA controller of a
standalone zone. The leader's keeper writes through a store view fenced by a local
lease; the follower's signer reads through a view that refuses every write, so any
write it tried would fail the test. Time is a fake clock throughout.
"""

from __future__ import annotations

import builtins
import datetime as dt
from collections.abc import Sequence

import pytest
from cryptography import x509

from authority.mesh_ca import MeshCaController
from gossamer.election.core import Fence
from gossamer.election.leases import FencedStore, LocalLeases, NotLeader
from gossamer.model.base import Resource
from gossamer.model.labels import AGENT_LABEL, AGENT_VALUE, CP_REPLICA_LABEL
from gossamer.model.registry import parse_document
from gossamer.model.zonetrust import ZoneTrustStatusSpec
from gossamer.pki.certs import new_csr, new_key, public_der
from gossamer.resources import ResourceManager
from gossamer.store.base import Store, WriteOp
from gossamer.store.memory import MemoryStore
from tests.builders import dataplane_doc
from tests.unit.test_zone_ca import IDENTITY, NOW, FakeSidecar, FakeSidecars, mesh_doc
from zone_cp.ca import ZoneCa
from zone_cp.ca_keeper import ZoneCaKeeper, merged
from zone_cp.leftovers import DeadReplicas
from zone_cp.replicas import Liveness, ReplicaRecords, record_name


class ReadOnly(FencedStore):
    """A store view that refuses every write: what a follower's CA must never need."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner, LocalLeases(), lambda: None)

    async def write(self, ops: Sequence[WriteOp]) -> builtins.list[Resource | None]:
        raise AssertionError(f"a follower's CA wrote {ops}")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Zone:
    """Replica ``a`` leads (its keeper's writes carry the lease's fence), ``b`` follows."""

    def __init__(self) -> None:
        self.store = MemoryStore()
        self.manager = ResourceManager(self.store)
        self.leases = LocalLeases()
        self.epoch = 0
        self.leading = ResourceManager(FencedStore(self.store, self.leases, self.fence))
        self.controller = MeshCaController(self.leading, local_zone="west")
        self.clock, self.wall = Clock(), Clock()
        self.sidecars = {"a": FakeSidecars(), "b": FakeSidecars()}
        self.ca = {
            "a": ZoneCa(self.manager, "west", self.sidecars["a"]),
            "b": ZoneCa(ResourceManager(ReadOnly(self.store)), "west", self.sidecars["b"]),
        }
        self.records = {
            r: ReplicaRecords(
                self.manager, "west", r, self.ca[r].statuses, clock=self.clock, wall=self.wall
            )
            for r in ("a", "b")
        }
        self.keeper = ZoneCaKeeper(self.leading, self.ca["a"], "west", self.records["a"])
        self.keeper.startup_grace = 0

    def fence(self) -> Fence | None:
        return Fence("zone", "a", self.epoch) if self.epoch else None

    async def lead(self) -> None:
        grant = await self.leases.acquire("zone", "a", 3600)
        self.epoch = grant.epoch  # type: ignore[union-attr]

    async def settle(self, now: dt.datetime = NOW) -> None:
        for _ in range(4):
            await self.controller.reconcile(now)
            await self.keeper.reconcile(now)
            for ca in self.ca.values():
                await ca.reconcile(now)
            for records in self.records.values():
                await records.publish()

    async def status(self) -> ZoneTrustStatusSpec:
        spec = (await self.manager.get("ZoneTrustStatus", "default")).spec
        assert isinstance(spec, ZoneTrustStatusSpec)
        return spec

    async def intermediate(self, replica: str) -> x509.Certificate:
        """The intermediate a workload certificate signed by ``replica`` chains to."""
        signed = await self.ca[replica].sign("default", IDENTITY, new_csr(new_key(), "x"), NOW)
        return x509.load_pem_x509_certificates(signed.chain_pem)[1]


async def zone_with_mesh() -> Zone:
    zone = Zone()
    await zone.lead()
    await zone.manager.apply(parse_document(mesh_doc()))
    await zone.settle()
    return zone


async def test_both_replicas_sign_with_the_one_stored_intermediate() -> None:
    zone = await zone_with_mesh()
    a, b = await zone.intermediate("a"), await zone.intermediate("b")
    assert a == b
    assert public_der(zone.ca["b"].issuer("default").ca.key.public_key()) == public_der(
        zone.ca["a"].issuer("default").ca.key.public_key()
    )


async def test_a_keeper_without_the_lease_writes_nothing() -> None:
    zone = Zone()
    await zone.manager.apply(parse_document(mesh_doc()))
    before = await zone.store.revision()
    with pytest.raises(NotLeader):
        await zone.keeper.reconcile(NOW)  # no lease: its first write is fenced off
    assert await zone.store.revision() == before
    assert (await zone.manager.list("GlobalSecret")).items == []
    assert (await zone.manager.list("ZoneCertificateRequest")).items == []


async def test_the_report_adds_every_live_replicas_sidecars() -> None:
    zone = await zone_with_mesh()
    for replica, names in (("a", ["a1", "a2"]), ("b", ["b1"])):
        members = [FakeSidecar(f"default.{n}") for n in names]
        zone.sidecars[replica].members = members
        for member in members:
            signed = await zone.ca[replica].sign("default", IDENTITY, new_csr(new_key(), "x"), NOW)
            member.certificate_chain = x509.load_pem_x509_certificates(signed.chain_pem)
    await zone.settle()
    status = await zone.status()
    assert status.dataplanes == 3 and sum(status.certificates.values()) == 3
    # b dies: its record stops moving, and after the bound its sidecars no longer count.
    zone.clock.now += zone.records["a"].dead_after
    await zone.records["a"].publish()
    await zone.keeper.reconcile(NOW)
    assert (await zone.status()).dataplanes == 2


async def test_rotation_by_the_keeper_reaches_the_followers_signer() -> None:
    zone = await zone_with_mesh()
    before = await zone.intermediate("b")
    later = NOW + dt.timedelta(days=6)  # past the renewal point of a 7-day intermediate
    await zone.keeper.reconcile(later)  # asks with a pending key
    assert await zone.intermediate("b") == before  # the current one signs meanwhile
    await zone.settle(later)
    after = await zone.intermediate("b")
    assert after != before
    assert public_der(after.public_key()) != public_der(before.public_key())  # a new key
    assert after == await zone.intermediate("a")


def test_merged_counts_a_replica_on_another_bundle_as_not_serving_it() -> None:
    own = ZoneTrustStatusSpec(
        zone="west",
        mesh="m",
        bundle_digest="new",
        dataplanes=2,
        dataplanes_with_bundle=2,
        certificates={"r1": 2},
    )
    behind = own.model_copy(
        update={
            "bundle_digest": "old",
            "dataplanes": 3,
            "dataplanes_with_bundle": 3,
            "certificates": {"r0": 3},
            "issuance_error": "no intermediate CA yet",
        }
    )
    got = merged(own, [behind])
    assert (got.dataplanes, got.dataplanes_with_bundle) == (5, 2)
    assert got.certificates == {"r0": 3, "r1": 2}
    assert got.issuance_error == "no intermediate CA yet"


def test_liveness_credits_a_first_sight_with_its_own_age_then_times_by_movement() -> None:
    from gossamer.model.zonereplica import ZoneCpReplicaSpec

    def rec(at: float) -> ZoneCpReplicaSpec:
        return ZoneCpReplicaSpec(zone="west", replica="x", reported_at=at)

    live = Liveness()
    live.observe([rec(100.0)], now=5.0, wall=130.0)  # stamped 30 s ago (wall clock)
    assert live.age("x", 5.0) == 30.0 and live.dead(30.0, 5.0) == ["x"]
    live.observe([rec(90.0)], now=6.0, wall=999.0)  # moved (a skewed clock): alive
    assert live.age("x", 6.0) == 0.0
    live.observe([rec(90.0)], now=20.0, wall=999.0)
    assert live.dead(15.0, 20.0) == [] and live.dead(14.0, 20.0) == ["x"]
    live.observe([], now=21.0, wall=999.0)
    assert live.age("x", 21.0) is None


async def agent_dataplane(zone: Zone, name: str, replica: str) -> Resource:
    labels = {AGENT_LABEL: AGENT_VALUE, CP_REPLICA_LABEL: replica}
    applied = await zone.manager.apply(parse_document(dataplane_doc(name, labels=labels)))
    return applied.resource


async def test_a_dead_replicas_sidecars_go_after_the_grace_unless_they_moved() -> None:
    zone = await zone_with_mesh()
    await agent_dataplane(zone, "gone", "b")
    await agent_dataplane(zone, "moved", "b")
    await agent_dataplane(zone, "on-a", "a")
    doc = {
        "type": "ZoneIngress",
        "name": "ingress-b",
        "labels": {CP_REPLICA_LABEL: "b"},
        "networking": {"address": "127.0.0.1", "port": 20010},
    }
    await zone.manager.apply(parse_document(doc))
    janitor = DeadReplicas(zone.leading, zone.records["a"], grace=10.0)
    records = zone.records["a"]
    assert await janitor.sweep() == {}
    zone.clock.now += records.dead_after  # b wrote nothing since: dead
    await records.publish()
    assert await janitor.sweep() == {}  # noted; its grace starts
    await agent_dataplane(zone, "moved", "a")  # its agent registered through a
    zone.clock.now += 10.0
    await records.publish()
    assert await janitor.sweep() == {
        "b": [("Dataplane", "default", "gone"), ("ZoneIngress", "", "ingress-b")]
    }
    names = {r.name for r in (await zone.manager.list("Dataplane")).items}
    assert names == {"moved", "on-a"}
    # Nothing carries b's stamp any more: its record goes too.
    left = {r.name for r in (await zone.manager.list("ZoneCpReplica")).items}
    assert left == {record_name("west", "a")}


async def test_a_replica_that_comes_back_within_the_grace_keeps_its_sidecars() -> None:
    zone = await zone_with_mesh()
    await agent_dataplane(zone, "web", "b")
    janitor = DeadReplicas(zone.leading, zone.records["a"], grace=10.0)
    await janitor.sweep()
    zone.clock.now += zone.records["a"].dead_after
    await janitor.sweep()  # b noted dead
    zone.wall.now += 1.0
    await zone.records["b"].publish()  # b was only slow: its record moves
    zone.clock.now += 10.0
    assert await janitor.sweep() == {}
    assert [r.name for r in (await zone.manager.list("Dataplane")).items] == ["web"]


async def test_a_replica_taken_for_dead_stores_its_sidecars_again_when_it_writes() -> None:
    zone = await zone_with_mesh()
    revived: list[str] = []

    async def restore() -> None:
        revived.append("b")

    zone.records["b"].on_revived.append(restore)
    await agent_dataplane(zone, "web", "b")
    janitor = DeadReplicas(zone.leading, zone.records["a"], grace=10.0)
    await janitor.sweep()
    zone.clock.now += zone.records["a"].dead_after
    await janitor.sweep()
    zone.clock.now += 10.0
    assert await janitor.sweep() == {"b": [("Dataplane", "default", "web")]}
    await zone.records["b"].publish()  # b was only cut off: its record comes back
    assert revived == ["b"]
    await zone.records["b"].publish()
    assert revived == ["b"]  # once
