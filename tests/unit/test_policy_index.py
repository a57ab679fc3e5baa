"""``gossamer.policy.PolicyIndex``: per targetRef kind, the policies a proxy gets from the
index are exactly those that select it, in the input order; the zone and mesh rules; the
identity of a candidate set (stored versions, recreated and unstored policies); a wrong
zone is refused by name. The random equivalence with a full match is in
``test_policy_index_equivalence.py``.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest

from gossamer.model.base import Meta, Resource
from gossamer.policy import (
    PolicyIndex,
    ProxyView,
    match_key,
    match_policies,
    policy_key,
    policy_order,
)
from gossamer.policy.index import Candidates
from tests.builders import inbound
from tests.unit.policy_matching_kinds import MESH, dataplane, policy, svc, to_

ZONE = "east"


def names(found: Candidates | list[Resource]) -> list[str]:
    policies = found.policies if isinstance(found, Candidates) else found
    return [p.name for p in policies]


def web(name: str = "web-1", **tags: str) -> Resource:
    return dataplane(name, [inbound("web", 8080, None, **tags)])


def timeout(name: str, target: dict[str, Any], **kw: Any) -> Resource:
    return policy(name, target, to=[to_(MESH, connectionTimeout="1s")], **kw)


def lookup(policies: list[Resource], dp: Resource, zone: str | None = ZONE) -> list[str]:
    return names(PolicyIndex(policies, zone=zone).select(ProxyView.of(dp, zone)))


def test_each_targetref_kind_reaches_exactly_the_proxies_it_selects() -> None:
    policies = [
        timeout("mesh", MESH),
        timeout("subset-v1", {"kind": "MeshSubset", "tags": {"version": "v1"}}),
        timeout("subset-any", {"kind": "MeshSubset", "tags": {}}),
        timeout("svc-web", svc("web")),
        timeout("svc-db", svc("db")),
        timeout("web-v2", {"kind": "MeshServiceSubset", "name": "web", "tags": {"version": "v2"}}),
        timeout("dp-web-1", {"kind": "Dataplane", "name": "web-1"}),
        timeout("dp-web-2-v2", {"kind": "Dataplane", "name": "web-2", "tags": {"version": "v2"}}),
    ]
    assert lookup(policies, web("web-1", version="v1")) == [
        "mesh", "subset-v1", "subset-any", "svc-web", "dp-web-1"]
    assert lookup(policies, web("web-2", version="v2")) == [
        "mesh", "subset-any", "svc-web", "web-v2", "dp-web-2-v2"]
    assert lookup(policies, web("web-2", version="v1")) == [
        "mesh", "subset-v1", "subset-any", "svc-web"]


def test_a_subset_is_rechecked_on_every_tag_and_on_one_inbound() -> None:
    both = timeout("v1-prod", {"kind": "MeshSubset", "tags": {"version": "v1", "env": "prod"}})
    assert lookup([both], web(version="v1", env="prod")) == ["v1-prod"]
    assert lookup([both], web(version="v1", env="dev")) == []
    # The two tags on two different inbounds of one proxy: no inbound carries both.
    split = dataplane("web-1", [inbound("web", 8080, None, version="v1"),
                                inbound("admin", 9090, None, env="prod")])
    assert lookup([both], split) == []
    assert match_policies(split, [both], zone=ZONE).kinds == {}


def test_the_zone_tag_selects_a_proxy_with_no_inbounds() -> None:
    east = timeout("east", {"kind": "MeshSubset", "tags": {"gossamer.io/zone": ZONE}})
    east_web = timeout("east-web", {"kind": "MeshSubset", "tags": {
        "gossamer.io/zone": ZONE, "gossamer.io/service": "web"}})
    gateway = dataplane("gw-1", [])
    assert lookup([east, east_web], gateway) == ["east"]
    assert lookup([east, east_web], web()) == ["east", "east-web"]
    assert lookup([east, east_web], gateway, zone="west") == []
    assert lookup([east, east_web], web(), zone=None) == []


def test_other_meshes_and_other_zones_are_left_out() -> None:
    policies = [
        timeout("other-mesh", MESH, mesh="other"),
        timeout("ref-other-mesh", {"kind": "Mesh", "mesh": "other"}),
        timeout("ref-own-mesh", {"kind": "MeshService", "name": "web", "mesh": "default"}),
        timeout("west-only", MESH, origin="zone", zone="west"),
        timeout("east-only", MESH, origin="zone", zone=ZONE),
        timeout("from-global", MESH, origin="global", zone="west"),
    ]
    index = PolicyIndex(policies, zone=ZONE)
    assert len(index) == 4  # other-mesh is indexed for mesh other's proxies
    assert names(index.select(ProxyView.of(web(), ZONE))) == [
        "ref-own-mesh", "east-only", "from-global"]
    assert names(index.candidates(ProxyView.of(dataplane("web-1", mesh="other"), ZONE))) == [
        "other-mesh"]
    # Without a zone every zone-origin policy applies, as in match_policies(zone=None).
    assert lookup(policies, web(), zone=None) == [
        "ref-own-mesh", "west-only", "east-only", "from-global"]


def test_candidates_keep_the_input_order_across_buckets() -> None:
    policies = sorted([
        timeout("b-mesh", MESH), timeout("a-mesh", MESH),
        timeout("z-svc", svc("web")), timeout("a-svc", svc("web")),
        timeout("m-subset", {"kind": "MeshSubset", "tags": {"version": "v1"}}),
        timeout("dp", {"kind": "Dataplane", "name": "web-1"}),
    ], key=policy_order)
    expected = [p.name for p in policies]
    assert lookup(policies, web(version="v1")) == expected
    assert lookup(list(reversed(policies)), web(version="v1")) == list(reversed(expected))


def test_indexed_match_equals_the_full_match() -> None:
    policies = sorted([
        policy("mesh", MESH, to=[to_(MESH, idleTimeout="1h")],
               from_=[to_(MESH, idleTimeout="2h")]),
        policy("web", svc("web"), to=[to_(svc("db"), connectionTimeout="3s")],
               rules=[{"default": {"idleTimeout": "5m"}}]),
        policy("db", svc("db"), rules=[{"default": {"idleTimeout": "9m"}}]),
        policy("v2", {"kind": "MeshSubset", "tags": {"version": "v2"}},
               to=[to_(svc("db"), connectionTimeout="7s")]),
    ], key=policy_order)
    index = PolicyIndex(policies, zone=ZONE)
    for dp in (web(version="v1"), web("web-2", version="v2"), dataplane("gw-1", [])):
        found = index.candidates(ProxyView.of(dp, ZONE))
        assert len(found) < len(policies)
        kw: dict[str, Any] = {"destinations": ["db"], "zone": ZONE, "presorted": True}
        assert match_policies(dp, found, **kw) == match_policies(dp, policies, **kw)


def test_identity_follows_stored_versions_and_recreation() -> None:
    when = datetime(2026, 1, 1, tzinfo=UTC)
    stored = dataclasses.replace(timeout("t", MESH), meta=Meta(1, when, when, revision=7))
    updated = dataclasses.replace(stored, meta=Meta(2, when, when, revision=9))
    recreated = dataclasses.replace(stored, meta=Meta(1, when, when, revision=12))
    keys = {policy_key(p) for p in (stored, updated, recreated)}
    assert len(keys) == 3
    assert policy_key(stored) == ("MeshTimeout", "t", 1, 7, when)
    view = ProxyView.of(web(), ZONE)
    assert PolicyIndex([stored], ZONE).select(view).identity == (policy_key(stored),)


def test_identity_of_unstored_policies_follows_their_content() -> None:
    a, same = timeout("t", MESH), timeout("t", MESH)
    other_spec = policy("t", MESH, to=[to_(MESH, connectionTimeout="2s")])
    other_labels = timeout("t", MESH, origin="global")
    assert policy_key(a) == policy_key(same)
    assert policy_key(a) != policy_key(other_spec)
    assert policy_key(a) != policy_key(other_labels)


def test_proxies_of_one_shape_share_an_identity_unless_a_dataplane_is_named() -> None:
    policies = [timeout("mesh", MESH), timeout("svc", svc("web")),
                timeout("pin", {"kind": "Dataplane", "name": "web-2"})]
    index = PolicyIndex(policies, zone=ZONE)
    one, two, three = (index.select(ProxyView.of(web(f"web-{i}"), ZONE)) for i in (1, 2, 3))
    assert one.identity == three.identity and not one.names_a_dataplane
    assert two.identity != one.identity and two.names_a_dataplane
    kw: dict[str, Any] = {"destinations": ["db"], "zone": ZONE, "presorted": True}
    first = match_policies(web("web-1"), one.policies, **kw)
    third = match_policies(web("web-3"), three.policies, **kw)
    assert dataclasses.replace(third, dataplane="web-1") == first


def test_a_view_of_another_zone_is_refused_by_name() -> None:
    index = PolicyIndex([timeout("mesh", MESH)], zone=ZONE)
    with pytest.raises(ValueError, match="zone 'east' cannot answer for proxy 'web-1' of "
                                         "zone 'west'"):
        index.select(ProxyView.of(web(), "west"))
    with pytest.raises(ValueError, match="of zone None"):
        index.candidates(ProxyView.of(web(), None))


def test_non_policies_are_ignored() -> None:
    index = PolicyIndex([web("web-9"), timeout("mesh", MESH)], zone=ZONE)
    assert len(index) == 1
    assert names(index.select(ProxyView.of(web(), ZONE))) == ["mesh"]


def test_match_key_is_hashable_and_covers_inbound_tags_and_zone() -> None:
    index = PolicyIndex([timeout("mesh", MESH)], zone=ZONE)
    keys = {}
    for dp in (web("web-1", version="v1"), web("web-2", version="v1"),
               web("web-3", version="v2"), dataplane("gw-1", [])):
        view = ProxyView.of(dp, ZONE)
        keys[dp.name] = match_key(view, index.select(view))
    assert keys["web-1"] == keys["web-2"]
    assert len({keys["web-1"], keys["web-3"], keys["gw-1"]}) == 3
    west = PolicyIndex([timeout("mesh", MESH)], zone="west")
    view = ProxyView.of(web("web-1", version="v1"), "west")
    assert match_key(view, west.select(view)) != keys["web-1"]
