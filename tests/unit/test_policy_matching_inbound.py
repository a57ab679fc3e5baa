"""Policy matching (gossamer.policy) of inbound rules: ``rules`` apply only to the selected
inbounds, and MeshTrafficPermission's ``from`` rules are ordered for first match, with
zone-origin overriding global and overlapping sources merged.
"""

from __future__ import annotations

from typing import Any

import pytest

from gossamer.model.base import Resource
from gossamer.model.meshtimeout import MeshTimeoutConf
from gossamer.model.registry import parse_document
from gossamer.policy import (
    InboundKey,
    PolicyRef,
    SourceSelector,
    TooManySourceRules,
    match_policies,
)
from gossamer.policy.merge import conf_data
from tests.unit.policy_matching_kinds import MESH, SVC, dataplane, policy, svc, to_

TWO_INBOUNDS = [{"port": 8080, "tags": {SVC: "web", "version": "v1"}},
                {"port": 9000, "tags": {SVC: "web-admin"}}]


def test_inbound_rules_apply_only_to_selected_inbounds() -> None:
    result = match_policies(dataplane(inbounds=TWO_INBOUNDS), [
        policy("all", MESH, rules=[{"default": {"idleTimeout": "1s", "connectionTimeout": "1s"}}]),
        policy("web", svc("web"), rules=[{"default": {"idleTimeout": "2s"}}]),
    ])
    mt = result.kind("MeshTimeout")
    web, admin = mt.inbound(8080), mt.inbound(9000)
    assert web.rules is not None and admin.rules is not None
    assert conf_data(web.rules.model(MeshTimeoutConf)) == {"idleTimeout": "2s",
                                                           "connectionTimeout": "1s"}
    assert conf_data(admin.rules.model(MeshTimeoutConf)) == {"idleTimeout": "1s",
                                                             "connectionTimeout": "1s"}
    assert set(mt.inbounds) == {InboundKey(8080), InboundKey(9000)}
    assert mt.inbound(1234).rules is None and mt.inbound(1234).from_rules == ()


def mtp(name: str, target: dict[str, Any], *items: tuple[dict[str, Any], str],
        **kw: Any) -> Resource:
    pytest.importorskip("gossamer.model.meshtrafficpermission")
    return parse_document({"type": "MeshTrafficPermission", "name": name,
                           "labels": ({"gossamer.io/origin": kw["origin"]} if kw else {}),
                           "spec": {"targetRef": target, "from": [
                               {"targetRef": t, "default": {"action": a}} for t, a in items]}})


def actions(rules: Any) -> list[tuple[dict[str, str], str]]:
    return [(r.source.as_dict(), r.conf.conf.action.value) for r in rules]


def test_traffic_permission_from_rules_are_ordered_for_first_match() -> None:
    result = match_policies(dataplane(inbounds=TWO_INBOUNDS), [
        mtp("deny-all", MESH, (MESH, "Deny")),
        mtp("web-from-frontend", svc("web"), (svc("frontend"), "Allow"),
            ({"kind": "MeshSubset", "tags": {"env": "prod"}}, "AllowWithShadowDeny")),
        mtp("web-from-frontend-dev", svc("web"),
            ({"kind": "MeshServiceSubset", "name": "frontend", "tags": {"env": "dev"}}, "Deny")),
    ])
    perms = result.kind("MeshTrafficPermission")
    web = perms.inbound(8080)
    assert actions(web.from_rules) == [
        ({SVC: "frontend", "env": "dev"}, "Deny"),
        ({SVC: "frontend", "env": "prod"}, "Allow"),  # MeshService beats MeshSubset
        ({"env": "prod"}, "AllowWithShadowDeny"),  # same size: any order is correct
        ({SVC: "frontend"}, "Allow"),
        ({}, "Deny"),
    ]

    def action(inbound: int, tags: dict[str, str]) -> str | None:
        conf = perms.inbound(inbound).for_source(tags)
        return None if conf is None else str(conf.conf.action.value)  # type: ignore[union-attr]

    assert action(8080, {SVC: "frontend", "env": "prod"}) == "Allow"
    assert action(8080, {SVC: "frontend", "env": "dev"}) == "Deny"
    assert action(8080, {SVC: "batch", "env": "prod"}) == "AllowWithShadowDeny"
    assert action(8080, {SVC: "batch"}) == "Deny"
    # the admin inbound is only selected by the Mesh-wide policy
    assert actions(perms.inbound(9000).from_rules) == [({}, "Deny")]


def test_traffic_permission_zone_overrides_global_for_same_source() -> None:
    result = match_policies(dataplane(), [
        mtp("z-global", svc("web"), (svc("frontend"), "Deny"), origin="global"),
        mtp("a-zone", svc("web"), (svc("frontend"), "Allow"), origin="zone"),
    ])
    web = result.kind("MeshTrafficPermission").inbound(8080)
    assert actions(web.from_rules) == [({SVC: "frontend"}, "Allow")]
    assert web.from_rules[0].conf.policies == (PolicyRef("MeshTrafficPermission", "z-global"),
                                               PolicyRef("MeshTrafficPermission", "a-zone"))


def test_from_rules_merge_fields_across_overlapping_sources() -> None:
    result = match_policies(dataplane(), [policy("web", svc("web"), from_=[
        to_(MESH, idleTimeout="1s"),
        to_({"kind": "MeshSubset", "tags": {"env": "prod"}}, connectionTimeout="2s"),
        to_(svc("frontend"), idleTimeout="3s"),
    ])])
    web = result.kind("MeshTimeout").inbound(8080)

    def conf(tags: dict[str, str]) -> dict[str, Any]:
        merged = web.for_source(tags)
        return {} if merged is None else conf_data(merged.model(MeshTimeoutConf))

    assert conf({SVC: "frontend", "env": "prod"}) == {"idleTimeout": "3s",
                                                      "connectionTimeout": "2s"}
    assert conf({SVC: "frontend"}) == {"idleTimeout": "3s"}
    assert conf({SVC: "other", "env": "prod"}) == {"idleTimeout": "1s", "connectionTimeout": "2s"}
    assert conf({}) == {"idleTimeout": "1s"}
    assert web.from_rules[0].source == SourceSelector(
        (("env", "prod"), (SVC, "frontend")))


def test_from_source_contradicting_its_service_is_dropped() -> None:
    result = match_policies(dataplane(), [policy("web", svc("web"), from_=[
        to_({"kind": "MeshServiceSubset", "name": "a", "tags": {SVC: "b"}}, idleTimeout="1s")])])
    assert result.kind("MeshTimeout").inbound(8080).from_rules == ()


def test_too_many_overlapping_sources_is_an_error() -> None:
    items = [to_({"kind": "MeshSubset", "tags": {f"k{i}": "x"}}, idleTimeout="1s")
             for i in range(11)]  # 2**11 - 1 combinations
    with pytest.raises(TooManySourceRules) as err:
        match_policies(dataplane(), [policy("web", svc("web"), from_=items)])
    assert err.value.caller_fault and not err.value.retryable

