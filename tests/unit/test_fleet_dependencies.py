"""The zone CP's fleet regenerates only the proxies a change affects, and what every
proxy holds after a round equals a full regeneration, byte for byte.

The mesh is ``test_context_destinations``' (routes with backends nobody calls directly,
policies by Mesh, MeshService, MeshSubset, MeshServiceSubset and Dataplane, zone
origins). Random changes (Hypothesis) to Dataplanes (new, readdressed, moved to another
service, deleted), policies, VirtualIPs and the Mesh (changed, deleted) are written to a
memory store followed by a ``MeshState``, and sidecars leave and join again between
them; after each round every member's last delivered resources must be what
``generate(context_for(dp))`` gives from scratch (with the VIP outbounds of a fresh
``VipView``). A member the round skipped thus kept resources that were still right: the
regenerated set is a superset of the proxies whose resources changed, whatever the
fleet's indexes (by Dataplane, by service read, by VIP use) left out. The services the
state patches change by change must equal those of a state loaded from scratch.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import zone_cp.fleet as fleet_module
from authority.bootstrap import DEFAULT_MESH
from gossamer.errors import InvalidResource, NotFound
from gossamer.model.base import Resource
from gossamer.model.registry import parse_document
from gossamer.model.virtualip import VirtualIPSpec, labels_for, resource_name
from gossamer.resources import ResourceManager
from gossamer.store.memory import MemoryStore
from proxy.envoy import PieceCache, ProxyResources, generate
from tests.unit.test_context_destinations import (
    ZONE,
    dataplane,
    dataplanes,
    policies,
    policy,
    serialized,
    svc,
    to,
)
from tests.waiting import eventually
from zone_cp.fleet import Fleet
from zone_cp.mesh_dns import VipView, vip_outbounds
from zone_cp.mesh_state import MeshState
from zone_cp.xds_resources import Entries, desired_entries

Change = Callable[[ResourceManager], Awaitable[None]]


@dataclass(frozen=True)
class Leave:
    """The sidecar of this Dataplane disconnects (it joins again after the next round
    while its Dataplane is stored)."""

    name: str


Step = Change | Leave


class Held:
    """What the fleet delivered to each member, and how often."""

    def __init__(self) -> None:
        self.resources: dict[str, ProxyResources] = {}
        self.entries: dict[str, Entries] = {}
        self.count: dict[str, int] = {}
        self.registered: dict[str, Resource] = {}
        self.leave: dict[str, Callable[[], None]] = {}

    def join(self, fleet: Fleet, state: MeshState) -> None:
        """Every Dataplane of the state not yet a member joins, as its sidecar would."""
        for dp in state.of_kind("Dataplane", "default"):
            if dp.name not in self.registered:
                self.registered[dp.name] = dp
                self.leave[dp.name] = fleet.join(dp.name, dp, self.sink(dp.name))

    def left(self, name: str) -> None:
        if name in self.registered:
            self.leave.pop(name)()
            del self.registered[name], self.resources[name]

    def sink(self, node: str) -> Callable[[ProxyResources, Entries], None]:
        def deliver(generated: ProxyResources, entries: Entries) -> None:
            self.resources[node] = generated
            self.entries[node] = entries
            self.count[node] = self.count.get(node, 0) + 1
        return deliver


async def fleet_of_mesh() -> tuple[ResourceManager, MeshState, Fleet, Held, asyncio.Task[None]]:
    manager = ResourceManager(MemoryStore())
    for doc in [DEFAULT_MESH, *policies(), *dataplanes()]:
        await manager.apply(parse_document(doc, manager.registry))
    state = MeshState(manager.store, zone=ZONE)
    task = asyncio.create_task(state.run())
    await eventually(lambda: state.generation > 0, what="the state to load the store")
    cache = PieceCache()
    fleet = Fleet(state, VipView(state), cache)
    held = Held()
    held.join(fleet, state)
    return manager, state, fleet, held, task


def assert_all_current(state: MeshState, held: Held) -> None:
    """Every member holds what a full generation gives (from the Dataplane it registered
    once the store has none, as the fleet does): the same messages, and the same engine
    entries (versions and bytes) as encoding them whole."""
    vips = VipView(state).of("default")  # a new view: nothing kept from earlier changes
    for name, registered in held.registered.items():
        dp = state.get("Dataplane", name, "default") or registered
        fresh = generate(state.context_for(dp, vip_outbounds(vips, dp)))
        assert serialized(held.resources[name]) == serialized(fresh), name
        assert held.entries[name] == desired_entries(fresh), name


async def assert_services_as_loaded(manager: ResourceManager, state: MeshState) -> None:
    """The services the state patched change by change are those of a state that loads
    the store now, in the same order."""
    fresh = MeshState(manager.store, zone=ZONE)
    task = asyncio.create_task(fresh.run())
    try:
        await eventually(lambda: fresh.generation > 0, what="a fresh state to load")
        assert list(state.shared_services("default").items()) == \
            list(fresh.shared_services("default").items())
        assert state.declared_ports("default") == fresh.declared_ports("default")
    finally:
        task.cancel()


async def settle(manager: ResourceManager, state: MeshState, change: Change) -> None:
    """Apply ``change`` and wait until the state has seen it."""
    before, revision = state.generation, await manager.store.revision()
    await change(manager)
    if await manager.store.revision() == revision:
        return  # the same document again: nothing was written
    await eventually(lambda: state.generation > before, what="the state to see the change")


def apply(doc: dict[str, Any]) -> Change:
    async def run(manager: ResourceManager) -> None:
        await manager.apply(parse_document(doc, manager.registry))
    return run


def delete(kind: str, name: str) -> Change:
    async def run(manager: ResourceManager) -> None:
        await manager.delete(kind, name, "default")
    return run


def vip(service: str, address: str) -> Change:
    async def run(manager: ResourceManager) -> None:
        await manager.apply(Resource("VirtualIP", resource_name(service),
                                     VirtualIPSpec(ip=address), mesh="default",
                                     labels=labels_for(service)))
    return run


def ingress(zone: str, instances: dict[str, int]) -> dict[str, Any]:
    return {"type": "ZoneIngress", "name": f"{zone}-ingress",
            "labels": {"gossamer.io/zone": zone},
            "networking": {"address": "192.168.1.1", "port": 10001},
            "availableServices": [{"mesh": "default", "instances": n,
                                   "tags": {"gossamer.io/service": name}}
                                  for name, n in instances.items()]}


async def delete_mesh(manager: ResourceManager) -> None:
    """The Mesh goes while its Dataplanes are stored: refused at the API, but what a zone
    sees when the global deletes a mesh its Dataplanes were never synced to."""
    await manager.store.delete("Mesh", "default")


TARGETS = st.sampled_from([
    {"kind": "Mesh"}, {"kind": "MeshService", "name": svc(2)},
    {"kind": "MeshSubset", "tags": {"version": "v2"}},
    {"kind": "MeshServiceSubset", "name": svc(5), "tags": {"version": "v1"}},
    {"kind": "Dataplane", "name": f"{svc(7)}-1"}])
DESTINATIONS = st.sampled_from([None, svc(1), svc(3), "bk-0", "bk-2"])


@st.composite
def changes(draw: st.DrawFn) -> Step:
    what = draw(st.sampled_from(["policy", "drop-policy", "dataplane", "move-dataplane",
                                 "other-service", "drop-dataplane", "vip", "drop-vip",
                                 "ingress", "leave", "mesh", "drop-mesh"]))
    k = draw(st.integers(0, 14))
    if what == "policy":
        seconds = draw(st.integers(1, 30))
        kind, name = draw(st.sampled_from([("MeshTimeout", "timeouts"),
                                           ("MeshTimeout", "new-timeout"),
                                           ("MeshCircuitBreaker", "new-breaker")]))
        default = ({"connectionTimeout": f"{seconds}s"} if kind == "MeshTimeout"
                   else {"connectionLimits": {"maxConnections": seconds}})
        return apply(policy(kind, name, {"targetRef": draw(TARGETS),
                                         "to": [to(draw(DESTINATIONS), default)]}))
    if what == "drop-policy":
        return delete(*draw(st.sampled_from([("MeshTimeout", "timeouts"),
                                             ("MeshHTTPRoute", "svc-00-split"),
                                             ("MeshTrafficPermission", "mtp-3"),
                                             ("MeshRetry", "one-proxy")])))
    if what == "dataplane":  # a new instance, or an existing one with a new address
        instance = draw(st.integers(0, 3))
        return apply(dataplane(svc(k), svc(k), "http", 50 + draw(st.integers(0, 3)),
                               instance, [svc(k + 1)]))
    if what == "move-dataplane":
        return apply(dataplane(svc(k), svc(k), "tcp", 60, 0, [svc(k + 2), "bk-1"]))
    if what == "other-service":  # an instance of svc(k) now serves another service
        return apply(dataplane(svc(k), svc(draw(st.integers(0, 14))), "http", 61,
                               draw(st.integers(0, 1)), [svc(k + 1)]))
    if what == "drop-dataplane":
        return delete("Dataplane", f"{svc(k)}-{draw(st.integers(0, 1))}")
    if what == "vip":  # a new VIP, or another address for one
        return vip(draw(st.sampled_from([svc(k), "bk-0"])),
                   f"240.0.0.{draw(st.integers(1, 3))}")
    if what == "drop-vip":
        return delete("VirtualIP", svc(k))
    if what == "ingress":  # another zone's (remote endpoints) or this zone's own
        return apply(ingress(draw(st.sampled_from(["east", ZONE])),
                             {svc(k): draw(st.integers(0, 2)), "bk-1": 1}))
    if what == "leave":
        return Leave(f"{svc(k)}-{draw(st.integers(0, 1))}")
    if what == "drop-mesh":
        return delete_mesh
    mesh = copy.deepcopy(DEFAULT_MESH)
    mesh["networking"] = {"outbound": {"passthrough": draw(st.booleans())}}
    mesh["mtls"]["mode"] = draw(st.sampled_from(["strict", "permissive"]))
    return apply(mesh)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink])
@given(st.lists(changes(), min_size=1, max_size=5))
def test_every_proxy_holds_a_full_regenerations_resources(steps: list[Step]) -> None:
    async def scenario() -> None:
        manager, state, fleet, held, task = await fleet_of_mesh()
        try:
            for step in steps:
                if isinstance(step, Leave):
                    held.left(step.name)
                    continue
                try:
                    await settle(manager, state, step)
                except (NotFound, InvalidResource):  # what an earlier step deleted
                    continue
                await fleet.round()
                assert_all_current(state, held)
                held.join(fleet, state)  # a new Dataplane's sidecar connects
            await assert_services_as_loaded(manager, state)
        finally:
            task.cancel()
    asyncio.run(scenario())


async def test_a_policy_on_one_service_regenerates_only_its_proxies() -> None:
    manager, state, fleet, held, task = await fleet_of_mesh()
    try:
        await fleet.round()  # whatever joining left pending
        before, checked = dict(held.count), fleet.checked
        await settle(manager, state, apply(policy("MeshTimeout", "svc-02-only", {
            "targetRef": {"kind": "MeshService", "name": svc(2)},
            "to": [to(None, {"connectionTimeout": "7s"})]})))
        assert await fleet.round() == 2  # svc-02's two instances, nothing else
        assert fleet.checked - checked == 2  # the only ones it may select, of 40
        again = {n for n, c in held.count.items() if c != before.get(n)}
        assert again == {f"{svc(2)}-0", f"{svc(2)}-1"}
        assert_all_current(state, held)
    finally:
        task.cancel()


async def test_this_zones_own_ingress_concerns_no_sidecar() -> None:
    """Its available services follow every registration here; none of them is read."""
    manager, state, fleet, held, task = await fleet_of_mesh()
    try:
        await settle(manager, state, apply(ingress("east", {svc(1): 1})))
        await fleet.round()
        checked, rounds = fleet.checked, fleet.rounds
        await settle(manager, state, apply(ingress(ZONE, {svc(1): 2, svc(2): 2})))
        await fleet.round()
        assert (fleet.checked, fleet.rounds) == (checked, rounds + 1)
        await settle(manager, state, apply(ingress("east", {svc(1): 3})))
        assert await fleet.round() > 0  # another zone's: svc-01's callers
        assert_all_current(state, held)
    finally:
        task.cancel()


async def test_an_endpoint_change_regenerates_only_the_services_callers() -> None:
    manager, state, fleet, held, task = await fleet_of_mesh()
    try:
        await fleet.round()
        before = dict(held.count)
        # One more instance of svc-09: its callers (svc-06, 07, 08: outbounds i+1..i+3).
        checked = fleet.checked
        await settle(manager, state, apply(dataplane(svc(9), svc(9), "http", 70, 5, [])))
        await fleet.round()
        again = {n.rsplit("-", 1)[0] for n, c in held.count.items() if c != before.get(n)}
        assert again == {svc(6), svc(7), svc(8)}
        # The round took the inputs of those six members only, not of the fleet's 40.
        assert fleet.checked - checked == 6
        assert_all_current(state, held)
    finally:
        task.cancel()


async def test_a_mesh_wide_change_patches_own_parts_from_a_template() -> None:
    """More instances of one service in one class (same version tag, addresses of one
    length): a mesh-wide change builds their own part once and patches it, the next
    outbound-only change patches all of them, and every proxy still holds a full
    generation's resources."""
    manager, state, fleet, held, task = await fleet_of_mesh()
    try:
        for instance in (2, 4, 6):  # version v1, like instance 0
            await settle(manager, state, apply(dataplane(
                svc(1), svc(1), "http", 1, instance, [svc(2), svc(3), svc(4)])))
        held.join(fleet, state)
        await fleet.round()
        shared = fleet._shared  # what the round shared is the point here
        before = shared.own_hits
        await settle(manager, state, apply(policy("MeshTimeout", "everyone", {
            "targetRef": {"kind": "Mesh"}, "to": [to(None, {"connectionTimeout": "9s"})]})))
        await fleet.round()
        assert shared.own_hits - before >= 2  # instances 4 and 6, once 0 and 2 checked it
        assert_all_current(state, held)
        # Another outbound-only change: the template outlives the generation, so all
        # four are patched, none generated.
        before = shared.own_hits
        await settle(manager, state, apply(policy("MeshTimeout", "everyone", {
            "targetRef": {"kind": "Mesh"}, "to": [to(None, {"connectionTimeout": "8s"})]})))
        await fleet.round()
        assert shared.own_hits - before >= 4
        assert_all_current(state, held)
        # An inbound change (an idle timeout on svc-01's inbound, where the Mesh-wide
        # "timeouts" had one) makes and checks new templates: none is patched stale.
        await settle(manager, state, apply(policy("MeshTimeout", "svc-01-inbound", {
            "targetRef": {"kind": "MeshService", "name": svc(1)},
            "from": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": "7m"}}]})))
        await fleet.round()
        assert_all_current(state, held)
    finally:
        task.cancel()


async def test_own_part_templates_are_bounded_by_the_fleet(monkeypatch: Any) -> None:
    """The fleet keeps at most ``_owns_for(members)`` templates, the least recently used
    going first; inbound changes (each a new key for every class) never grow it past
    that, and every proxy still holds a full generation's resources."""
    monkeypatch.setattr(fleet_module, "_owns_for", lambda members: 3)
    manager, state, fleet, held, task = await fleet_of_mesh()
    try:
        await fleet.round()
        shared = fleet._shared
        assert shared.keep_owns == 3
        for minutes in (5, 6, 7):
            await settle(manager, state, apply(policy("MeshTimeout", "inbound", {
                "targetRef": {"kind": "Mesh"},
                "from": [{"targetRef": {"kind": "Mesh"},
                          "default": {"idleTimeout": f"{minutes}m"}}]})))
            await fleet.round()
            assert 0 < len(shared._owns) <= 3
            assert_all_current(state, held)
    finally:
        task.cancel()
