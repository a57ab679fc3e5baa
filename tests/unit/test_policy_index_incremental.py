"""A mesh's policy structures changed in place equal the same structures built afresh.

Hypothesis: after every step of a random sequence of puts (new policies and replacements
of a held name, of every kind and targetRef, in two meshes, zone-origin from either
zone) and deletes, ``MeshPolicies`` (its ordered list, ``PolicyIndex.ordered`` changed by
``add``/``discard``, ``RouteBackends`` changed by ``add``/``discard``) answers exactly what
``PolicyIndex(policies)`` and ``RouteBackends.of(policies)`` built from the held policies
answer: the same candidates, by identity and in order, for every proxy of a random fleet,
and the same reachable services for every set of outbounds. And a ``MeshState`` following
a ``MemoryStore`` through those writes gives its proxies what a ``MeshState`` reset from the
store's listing gives (candidates, reachable services, after its memo of them).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gossamer.model.base import Resource
from gossamer.model.registry import parse_document
from gossamer.policy import PolicyIndex, ProxyView, RouteBackends
from gossamer.store.base import Delete, ListQuery, Put
from gossamer.store.memory import MemoryStore
from tests.builders import dataplane
from tests.unit.test_policy_index_equivalence import (
    KINDS,
    SERVICES,
    ZONES,
    fleets,
    sections,
    top_refs,
)
from zone_cp.mesh_state import KINDS as STATE_KINDS
from zone_cp.mesh_state import MeshState
from zone_cp.ordered_policies import MeshPolicies, order_key

MESHES = ["default", "other"]
NAMES = ["a", "b", "c"]  # few names: puts often replace a held policy
OUTBOUND_SETS = [frozenset(c) for n in range(len(SERVICES) + 1)
                 for c in itertools.combinations(SERVICES, n)]


@st.composite
def one_policy(draw: st.DrawFn) -> Resource:
    kind = draw(st.sampled_from(KINDS[:3] + KINDS[4:6]))  # timeouts, permissions, retries,
    origin = draw(st.sampled_from([None, "global", "zone"]))  # routes: names collide more
    zone = draw(st.sampled_from([None, *ZONES])) if origin else None
    labels = {k: v for k, v in (("gossamer.io/origin", origin), ("gossamer.io/zone", zone))
              if v}
    return parse_document({
        "type": kind, "name": draw(st.sampled_from(NAMES)),
        "mesh": draw(st.sampled_from(MESHES)), "labels": labels,
        "spec": {"targetRef": draw(top_refs()), **sections(draw, kind)}})


STEPS = st.lists(st.tuples(st.booleans(), one_policy()), min_size=1, max_size=12)
zones = st.sampled_from([None, *ZONES])


def same_candidates(a: tuple[Resource, ...], b: tuple[Resource, ...]) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))


def assert_as_rebuilt(meshes: dict[str, MeshPolicies], held: dict[Any, Resource],
                      fleet: list[Resource], zone: str | None) -> None:
    for mesh, kept in meshes.items():
        every = sorted((p for p in held.values() if p.mesh == mesh), key=order_key)
        assert same_candidates(tuple(kept.ordered.resources()), tuple(every))
        fresh = PolicyIndex(every, zone=zone)
        assert len(kept.index) == len(fresh)
        for dp in (dp for dp in fleet if dp.mesh == mesh):
            view = ProxyView.of(dp, zone)
            found, expected = kept.index.select(view), fresh.select(view)
            assert same_candidates(found.policies, expected.policies), dp.name
            assert found.identity == expected.identity
        routes = RouteBackends.of(every, mesh)
        assert kept.routes.by_destination == routes.by_destination
        for outbounds in OUTBOUND_SETS:
            assert kept.routes.reachable(outbounds) == routes.reachable(outbounds)


@settings(max_examples=200, deadline=None)
@given(st.lists(one_policy(), max_size=6), STEPS, fleets(), zones)
def test_changed_in_place_equals_rebuilt(initial: list[Resource],
                                         steps: list[tuple[bool, Resource]],
                                         fleet: list[Resource], zone: str | None) -> None:
    held = {p.key: p for p in initial}
    meshes = {m: MeshPolicies(m, zone, [p for p in held.values() if p.mesh == m])
              for m in MESHES}
    assert_as_rebuilt(meshes, held, fleet, zone)
    for delete, policy in steps:
        kept = meshes[policy.mesh]
        if delete:
            kept.discard(policy.key)
            held.pop(policy.key, None)
        else:
            kept.put(policy)
            held[policy.key] = policy
        assert_as_rebuilt(meshes, held, fleet, zone)


def test_a_selection_kept_does_not_change_with_the_index() -> None:
    """Consumers compare candidates by identity across changes (``zone_cp.fleet``):
    what ``select`` returned stays what it was."""
    proxy = dataplane("web-1", "web")
    view = ProxyView.of(proxy, "east")
    mesh_wide = parse_document({"type": "MeshTimeout", "name": "all", "mesh": "default",
                                "spec": {"targetRef": {"kind": "Mesh"}, "to": [{
                                    "targetRef": {"kind": "Mesh"},
                                    "default": {"connectionTimeout": "1s"}}]}})
    kept = MeshPolicies("default", "east", [mesh_wide])
    before = kept.index.select(view)
    other = parse_document({"type": "MeshRetry", "name": "web", "mesh": "default",
                            "spec": {"targetRef": {"kind": "MeshService", "name": "web"},
                                     "to": [{"targetRef": {"kind": "Mesh"}, "default": {
                                         "tcp": {"maxConnectAttempt": 2}}}]}})
    kept.put(other)
    kept.discard(mesh_wide.key)
    assert before.policies == (mesh_wide,)
    assert kept.index.select(view).policies == (other,)


def test_a_policy_given_twice_is_refused_by_name() -> None:
    policy = parse_document({"type": "MeshTimeout", "name": "twice", "mesh": "default",
                             "spec": {"targetRef": {"kind": "Mesh"}, "to": [{
                                 "targetRef": {"kind": "Mesh"},
                                 "default": {"connectionTimeout": "1s"}}]}})
    with pytest.raises(ValueError, match="MeshTimeout 'twice' of mesh 'default' is given twice"):
        PolicyIndex([policy, policy])
    with pytest.raises(ValueError, match="MeshTimeout 'twice' of mesh 'default' is given twice"):
        RouteBackends.of([policy, policy], "default")


async def listed(store: MemoryStore) -> list[Resource]:
    found: list[Resource] = []
    for kind in STATE_KINDS:
        found += (await store.list(ListQuery(kind))).items
    return found


def assert_state_as_reset(state: MeshState, fresh: MeshState, fleet: list[Resource]) -> None:
    for mesh in MESHES:
        assert same_candidates(tuple(state.policies(mesh)), tuple(fresh.policies(mesh)))
    for dp in fleet:
        mine, theirs = state.inputs(dp), fresh.inputs(dp)
        assert same_candidates(mine.candidates.policies, theirs.candidates.policies), dp.name
        assert mine.reachable == theirs.reachable, dp.name


async def follow_and_compare(initial: list[Resource], steps: list[tuple[bool, Resource]],
                             fleet: list[Resource], zone: str) -> None:
    store = MemoryStore()
    await store.write([Put(p) for p in initial])
    state = MeshState(store, zone)
    heard = asyncio.Event()
    state.listen(lambda _: heard.set())
    task = asyncio.create_task(state.run())
    try:
        await asyncio.wait_for(heard.wait(), 5)
        for delete, policy in steps:
            heard.clear()
            before = await store.revision()
            await store.write([Delete(policy.type, policy.name, policy.mesh, missing_ok=True)
                               if delete else Put(policy)])
            if await store.revision() != before:
                await asyncio.wait_for(heard.wait(), 5)
            fresh = MeshState(store, zone)
            fresh._reset(await listed(store))
            assert_state_as_reset(state, fresh, fleet)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@settings(max_examples=40, deadline=None)
@given(st.lists(one_policy(), max_size=6), STEPS, fleets(), st.sampled_from(ZONES))
def test_a_following_mesh_state_equals_one_reset_from_the_store(
        initial: list[Resource], steps: list[tuple[bool, Resource]],
        fleet: list[Resource], zone: str) -> None:
    asyncio.run(follow_and_compare(initial, steps, fleet, zone))
