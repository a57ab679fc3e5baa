"""Policy matching and merging (gossamer.policy): table-driven cases and properties.

Policies are built from documents with ``parse_document``. Besides the real kinds, a
small test registry adds three stand-in kinds so that list fields, model defaults,
exclusive fields, route-shaped ``to[].rules`` and default-only specs are covered whatever
the real kind modules look like today.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field, model_validator

from gossamer.model import dataplane as dataplane_kind
from gossamer.model import meshtimeout
from gossamer.model.base import KindDescriptor, Resource, Scope, SyncDirection
from gossamer.model.fields import SPEC_CONFIG
from gossamer.model.meshtimeout import MeshTimeoutConf
from gossamer.model.policy import MAX_ITEMS, MESH_TARGET, From, PolicySpec, TargetRef, To
from gossamer.model.registry import Registry, parse_document
from gossamer.policy import (
    InboundKey,
    KindPolicies,
    PolicyRef,
    SourceSelector,
    TooManySourceRules,
    match_policies,
    merge_confs,
    merge_data,
)
from gossamer.policy.merge import conf_data
from tests import builders
from tests.builders import inbound

SVC = "gossamer.io/service"

# --- stand-in kinds --------------------------------------------------------------------


class ListConf(BaseModel):
    """A conf with a list, a non-None default and two mutually exclusive fields."""

    model_config = SPEC_CONFIG

    backends: list[str] | None = None
    enabled: bool = True
    labels: dict[str, str] | None = None
    left: str | None = None
    right: str | None = None

    @model_validator(mode="after")
    def _exclusive(self) -> ListConf:
        if self.left is not None and self.right is not None:
            raise ValueError("left and right are exclusive")
        return self


class ListSpec(PolicySpec):
    to: list[To[ListConf]] | None = Field(None, max_length=MAX_ITEMS)
    from_: list[From[ListConf]] | None = Field(None, alias="from", max_length=MAX_ITEMS)


class WholeSpec(BaseModel):
    """Default-only, like MeshTrace/MeshMetric."""

    model_config = SPEC_CONFIG

    target_ref: TargetRef = Field(default=MESH_TARGET)
    default: ListConf


class FakeRouteRule(BaseModel):
    model_config = SPEC_CONFIG

    path: str
    backend: str


class FakeRouteTo(BaseModel):
    model_config = SPEC_CONFIG

    target_ref: TargetRef
    rules: list[FakeRouteRule]


class FakeRouteSpec(PolicySpec):
    to: list[FakeRouteTo] | None = None


def _descriptor(name: str, model: type[BaseModel]) -> KindDescriptor:
    return KindDescriptor(name=name, spec_model=model, scope=Scope.MESH, path=name.lower() + "s",
                          noun=name.lower(), alias=name.lower()[:6], sync=SyncDirection.LOCAL,
                          is_policy=True)


REGISTRY = Registry([dataplane_kind.DESCRIPTOR, meshtimeout.DESCRIPTOR,
                     _descriptor("TestList", ListSpec), _descriptor("TestWhole", WholeSpec),
                     _descriptor("TestRoute", FakeRouteSpec)])

# --- builders --------------------------------------------------------------------------


def dataplane(name: str = "web-1", inbounds: list[dict[str, Any]] | None = None,
              outbounds: list[dict[str, Any]] | None = None, mesh: str = "default") -> Resource:
    if inbounds is None:
        inbounds = [inbound("web", 8080, None, version="v1")]
    return builders.dataplane(name, mesh=mesh, address="10.0.0.1", inbounds=inbounds,
                              outbounds=outbounds or [], registry=REGISTRY)


def policy(name: str, target: dict[str, Any] | None = None, *, kind: str = "MeshTimeout",
           origin: str | None = None, zone: str | None = None, mesh: str = "default",
           **sections: Any) -> Resource:
    labels = {}
    if origin:
        labels["gossamer.io/origin"] = origin
    if zone:
        labels["gossamer.io/zone"] = zone
    spec: dict[str, Any] = {"targetRef": target or {"kind": "Mesh"}}
    spec.update({("from" if k == "from_" else k): v for k, v in sections.items()})
    return parse_document({"type": kind, "name": name, "mesh": mesh, "labels": labels,
                           "spec": spec}, REGISTRY)


def to_(target: dict[str, Any], **default: Any) -> dict[str, Any]:
    return {"targetRef": target, "default": default}


MESH = {"kind": "Mesh"}


def svc(name: str) -> dict[str, Any]:
    return {"kind": "MeshService", "name": name}


def outbound(policies: list[Resource], service: str = "backend", **kw: Any) -> dict[str, Any]:
    """The merged MeshTimeout conf for ``service`` as the dict of fields it sets."""
    result = match_policies(kw.pop("dp", None) or dataplane(), policies,
                            destinations=[service], **kw)
    merged = result.kind("MeshTimeout").outbound(service)
    return {} if merged is None else conf_data(merged.model(MeshTimeoutConf))


# --- outbound: which policies apply and who wins -----------------------------------------

OUTBOUND_CASES = [
    pytest.param([policy("all", MESH, to=[to_(MESH, idleTimeout="10s")])],
                 {"idleTimeout": "10s"}, id="mesh-applies-to-all"),
    pytest.param([policy("all", MESH, to=[to_(MESH, idleTimeout="10s", connectionTimeout="1s")]),
                  policy("web", svc("web"), to=[to_(MESH, idleTimeout="20s")])],
                 {"idleTimeout": "20s", "connectionTimeout": "1s"},
                 id="meshservice-beats-mesh-field-by-field"),
    pytest.param([policy("z-web", svc("web"), to=[to_(MESH, idleTimeout="20s")]),
                  policy("a-dp", {"kind": "Dataplane", "name": "web-1"},
                         to=[to_(MESH, idleTimeout="30s")])],
                 {"idleTimeout": "30s"}, id="dataplane-beats-meshservice"),
    pytest.param([policy("v1", {"kind": "MeshSubset", "tags": {"version": "v1"}},
                         to=[to_(MESH, idleTimeout="11s")]),
                  policy("v2", {"kind": "MeshSubset", "tags": {"version": "v2"}},
                         to=[to_(MESH, connectionTimeout="12s")])],
                 {"idleTimeout": "11s"}, id="meshsubset-needs-all-tags"),
    pytest.param([policy("sub", {"kind": "MeshServiceSubset", "name": "web",
                                 "tags": {"version": "v1"}}, to=[to_(MESH, idleTimeout="1s")]),
                  policy("svc", svc("web"), to=[to_(MESH, idleTimeout="2s")])],
                 {"idleTimeout": "1s"}, id="meshservicesubset-beats-meshservice"),
    pytest.param([policy("other", svc("payments"), to=[to_(MESH, idleTimeout="99s")])],
                 {}, id="policy-for-another-service-does-not-apply"),
    pytest.param([policy("other-dp", {"kind": "Dataplane", "name": "web-2"},
                         to=[to_(MESH, idleTimeout="99s")])],
                 {}, id="policy-for-another-dataplane-does-not-apply"),
    pytest.param([policy("dp-v2", {"kind": "Dataplane", "name": "web-1", "tags": {"version": "v2"}},
                         to=[to_(MESH, idleTimeout="99s")])],
                 {}, id="dataplane-tags-must-match-an-inbound"),
    pytest.param([policy("all", MESH, to=[to_(svc("backend"), idleTimeout="5s"),
                                          to_(MESH, idleTimeout="1s", connectionTimeout="2s")])],
                 {"idleTimeout": "5s", "connectionTimeout": "2s"},
                 id="to-meshservice-beats-to-mesh-within-a-policy"),
    pytest.param([policy("all", MESH, to=[to_(svc("backend"), idleTimeout="5s")]),
                  policy("web", svc("web"), to=[to_(MESH, idleTimeout="1s")])],
                 {"idleTimeout": "5s"}, id="to-specificity-comes-before-top-specificity"),
    pytest.param([policy("all", MESH, to=[to_(MESH, http={"requestTimeout": "1s",
                                                          "streamIdleTimeout": "2s"})]),
                  policy("web", svc("web"), to=[to_(svc("backend"),
                                                    http={"requestTimeout": "9s"})])],
                 {"http": {"requestTimeout": "9s", "streamIdleTimeout": "2s"}},
                 id="nested-models-merge-recursively"),
    pytest.param([policy("all", MESH, to=[to_(MESH, idleTimeout="1s")]),
                  policy("web", svc("web"), to=[to_(MESH, idleTimeout=None,
                                                    connectionTimeout="3s")])],
                 {"idleTimeout": "1s", "connectionTimeout": "3s"},
                 id="null-and-unset-inherit"),
    pytest.param([policy("a", svc("web"), origin="zone", to=[to_(MESH, idleTimeout="1s")]),
                  policy("z", svc("web"), origin="global", to=[to_(MESH, idleTimeout="2s")])],
                 {"idleTimeout": "1s"}, id="zone-origin-beats-global-despite-name"),
    pytest.param([policy("a", svc("web"), to=[to_(MESH, idleTimeout="1s")]),
                  policy("z", svc("web"), origin="global", to=[to_(MESH, idleTimeout="2s")])],
                 {"idleTimeout": "1s"}, id="unlabelled-counts-as-local"),
    pytest.param([policy("b", svc("web"), to=[to_(MESH, idleTimeout="2s")]),
                  policy("a", svc("web"), to=[to_(MESH, idleTimeout="1s")])],
                 {"idleTimeout": "2s"}, id="later-name-wins-a-tie"),
    pytest.param([policy("dp", {"kind": "Dataplane", "name": "web-1"}, origin="global",
                         to=[to_(MESH, idleTimeout="1s")]),
                  policy("svc", svc("web"), origin="zone", to=[to_(MESH, idleTimeout="2s")])],
                 {"idleTimeout": "1s"}, id="specificity-beats-origin"),
    pytest.param([policy("all", MESH, mesh="other", to=[to_(MESH, idleTimeout="1s")])],
                 {}, id="other-mesh-ignored"),
    pytest.param([policy("all", MESH, to=[to_(svc("db"), idleTimeout="1s")])],
                 {}, id="to-item-for-another-destination"),
]


@pytest.mark.parametrize(("policies", "expected"), OUTBOUND_CASES)
def test_outbound_conf(policies: list[Resource], expected: dict[str, Any]) -> None:
    assert outbound(policies) == expected


def test_zone_origin_policy_applies_only_in_its_zone() -> None:
    east = policy("east-only", MESH, origin="zone", zone="east", to=[to_(MESH, idleTimeout="1s")])
    assert outbound([east], zone="east") == {"idleTimeout": "1s"}
    assert outbound([east], zone="west") == {}
    assert outbound([east]) == {"idleTimeout": "1s"}  # zone unknown: cannot tell


def test_meshsubset_on_zone_tag() -> None:
    sub = policy("east", {"kind": "MeshSubset", "tags": {"gossamer.io/zone": "east"}},
                 to=[to_(MESH, idleTimeout="1s")])
    assert outbound([sub], zone="east") == {"idleTimeout": "1s"}
    assert outbound([sub], zone="west") == {}
    client = dataplane("client-1", inbounds=[])  # no inbounds: the zone tag still selects
    assert outbound([sub], zone="east", dp=client) == {"idleTimeout": "1s"}


def test_outbounds_keys_defaults_and_contributors() -> None:
    policies = [policy("all", MESH, to=[to_(MESH, idleTimeout="1s")]),
                policy("web", svc("web"), to=[to_(svc("db"), connectionTimeout="2s")])]
    dp = dataplane(outbounds=[{"port": 10001, "tags": {SVC: "cache"}}])
    mt = match_policies(dp, policies, destinations=["backend"]).kind("MeshTimeout")
    # the caller's destinations, the Dataplane's outbounds and services named by to[] items
    assert sorted(mt.outbounds) == ["backend", "cache", "db"]
    db = mt.outbound("db")
    assert db is not None
    assert conf_data(db.model(MeshTimeoutConf)) == {"idleTimeout": "1s", "connectionTimeout": "2s"}
    assert db.policies == (PolicyRef("MeshTimeout", "all"), PolicyRef("MeshTimeout", "web"))
    unknown = mt.outbound("never-mentioned")
    assert unknown is not None and unknown.policies == (PolicyRef("MeshTimeout", "all"),)
    assert conf_data(unknown.model(MeshTimeoutConf)) == {"idleTimeout": "1s"}


def test_nothing_applies() -> None:
    result = match_policies(dataplane(), [policy("x", svc("payments"), to=[to_(MESH,
                                                                              idleTimeout="1s")])])
    assert result.kinds == {}
    assert result.kind("MeshTimeout") == KindPolicies("MeshTimeout")
    assert result.kind("MeshTimeout").outbound("backend") is None


def test_non_policies_are_ignored() -> None:
    other_dp = dataplane("web-2")
    assert match_policies(dataplane(), [other_dp]).kinds == {}


# --- merge semantics on a conf with lists, defaults and exclusive fields ---------------


def list_conf(policies: list[Resource], service: str = "backend") -> tuple[dict[str, Any], Any]:
    merged = match_policies(dataplane(), policies,
                            destinations=[service]).kind("TestList").outbound(service)
    assert merged is not None
    return conf_data(merged.model(ListConf)), merged


def test_lists_are_replaced_not_appended() -> None:
    data, _ = list_conf([
        policy("all", MESH, kind="TestList", to=[to_(MESH, backends=["a", "b"])]),
        policy("web", svc("web"), kind="TestList", to=[to_(MESH, backends=["c"])])])
    assert data == {"backends": ["c"]}


def test_plain_dict_fields_merge_key_by_key() -> None:
    data, _ = list_conf([
        policy("all", MESH, kind="TestList", to=[to_(MESH, labels={"a": "1", "b": "1"})]),
        policy("web", svc("web"), kind="TestList", to=[to_(MESH, labels={"b": "2"})])])
    assert data == {"labels": {"a": "1", "b": "2"}}


def test_model_defaults_do_not_override_explicit_values() -> None:
    data, merged = list_conf([
        policy("all", MESH, kind="TestList", to=[to_(MESH, enabled=False)]),
        policy("web", svc("web"), kind="TestList", to=[to_(MESH, backends=["x"])])])
    assert data == {"enabled": False, "backends": ["x"]}
    assert merged.model(ListConf).enabled is False


def test_invalid_merge_falls_back_to_most_specific_conf() -> None:
    data, merged = list_conf([
        policy("all", MESH, kind="TestList", to=[to_(MESH, left="l")]),
        policy("web", svc("web"), kind="TestList", to=[to_(MESH, right="r")])])
    assert data == {"right": "r"}
    assert merged.policies == (PolicyRef("TestList", "web"),)
    assert merged.problem is not None and "exclusive" in merged.problem


def test_default_only_kind_is_proxy_wide() -> None:
    result = match_policies(dataplane(), [
        policy("all", MESH, kind="TestWhole", default={"backends": ["otel"], "left": "x"}),
        policy("web", svc("web"), kind="TestWhole", default={"backends": ["zipkin"]}),
        policy("pay", svc("payments"), kind="TestWhole", default={"enabled": False}),
    ])
    whole = result.kind("TestWhole")
    assert whole.proxy is not None
    assert conf_data(whole.proxy.model(ListConf)) == {"backends": ["zipkin"], "left": "x"}
    assert whole.outbounds == {} and whole.inbounds == {}


def test_route_kind_most_specific_wins_whole() -> None:
    def route(name: str, target: dict[str, Any], to_target: dict[str, Any], path: str) -> Resource:
        return policy(name, target, kind="TestRoute",
                      to=[{"targetRef": to_target, "rules": [{"path": path, "backend": name}]}])

    result = match_policies(dataplane(), [
        route("mesh", MESH, svc("backend"), "/a"),
        route("web", svc("web"), svc("backend"), "/b"),
        route("other", svc("web"), svc("db"), "/c"),
    ], destinations=["backend", "db", "cache"])
    routes = result.kind("TestRoute")
    backend = routes.outbound("backend")
    assert backend is not None
    assert [r.model_dump() for r in backend.rules] == [{"path": "/b", "backend": "web"}]
    assert backend.policies == (PolicyRef("TestRoute", "web"),)
    db = routes.outbound("db")
    assert db is not None and [r.model_dump() for r in db.rules] == [
        {"path": "/c", "backend": "other"}]
    assert routes.outbound("cache") is None


def test_real_meshhttproute_if_present() -> None:
    pytest.importorskip("gossamer.model.meshhttproute")

    def route(name: str, target: dict[str, Any], prefix: str) -> Resource:
        return parse_document({"type": "MeshHTTPRoute", "name": name, "spec": {
            "targetRef": target, "to": [{"targetRef": svc("backend"), "rules": [{
                "matches": [{"path": {"type": "PathPrefix", "value": prefix}}],
                "default": {"backendRefs": [{"kind": "MeshService", "name": "backend-v2"}]},
            }]}]}})

    policies = [route("b", MESH, "/mesh"), route("a", svc("web"), "/web")]
    result = match_policies(dataplane(), policies, destinations=["backend"])
    backend = result.kind("MeshHTTPRoute").outbound("backend")
    assert backend is not None and backend.policies == (PolicyRef("MeshHTTPRoute", "a"),)
    (rule,) = backend.rules
    assert rule.model_dump(by_alias=True, exclude_unset=True)["matches"] == [
        {"path": {"type": "PathPrefix", "value": "/web"}}]


def test_real_meshtcproute_if_present() -> None:
    pytest.importorskip("gossamer.model.meshtcproute")

    def route(name: str, target: dict[str, Any], backend: str) -> Resource:
        return parse_document({"type": "MeshTCPRoute", "name": name, "spec": {
            "targetRef": target, "to": [{"targetRef": svc("backend"), "rules": [{
                "default": {"backendRefs": [{"kind": "MeshService", "name": backend}]}}]}]}})

    result = match_policies(dataplane(), [route("a", svc("web"), "b-web"),
                                          route("z", MESH, "b-mesh")], destinations=["backend"])
    backend = result.kind("MeshTCPRoute").outbound("backend")
    assert backend is not None and backend.policies == (PolicyRef("MeshTCPRoute", "a"),)
    (rule,) = backend.rules
    assert rule.model_dump(by_alias=True, exclude_unset=True) == {
        "default": {"backendRefs": [{"kind": "MeshService", "name": "b-web"}]}}


def test_real_meshtrace_if_present() -> None:
    pytest.importorskip("gossamer.model.meshtrace")

    def trace(name: str, target: dict[str, Any], default: dict[str, Any]) -> Resource:
        return parse_document({"type": "MeshTrace", "name": name,
                               "spec": {"targetRef": target, "default": default}})

    otel = {"type": "OpenTelemetry", "openTelemetry": {"endpoint": "otel:4317"}}
    result = match_policies(dataplane(), [
        trace("mesh", MESH, {"backends": [otel], "sampling": {"overall": 10, "client": 20}}),
        trace("web", svc("web"), {"sampling": {"overall": 50}}),
        trace("pay", svc("payments"), {"sampling": {"overall": 99}}),
    ])
    proxy = result.kind("MeshTrace").proxy
    assert proxy is not None and proxy.problem is None
    assert proxy.conf.model_dump(by_alias=True, exclude_unset=True) == {  # type: ignore[union-attr]
        "backends": [otel], "sampling": {"overall": 50, "client": 20}}
    assert proxy.policies == (PolicyRef("MeshTrace", "mesh"), PolicyRef("MeshTrace", "web"))


# --- inbound: rules[] per selected inbound, from[] as first-match source rules ---------

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


# --- merge_data ------------------------------------------------------------------------

MERGE_CASES = [
    ({"a": 1}, {"a": 2}, {"a": 2}),
    ({"a": 1}, {"a": None}, {"a": 1}),
    ({"a": {"x": 1, "y": 2}}, {"a": {"y": 3}}, {"a": {"x": 1, "y": 3}}),
    ({"a": [1, 2]}, {"a": [3]}, {"a": [3]}),
    ({"a": 1}, {"b": {"c": None, "d": 1}}, {"a": 1, "b": {"d": 1}}),
    ({"a": 1}, {"a": {"b": 1}}, {"a": {"b": 1}}),
]


@pytest.mark.parametrize(("base", "override", "expected"), MERGE_CASES)
def test_merge_data(base: dict[str, Any], override: dict[str, Any],
                    expected: dict[str, Any]) -> None:
    before = repr(base)
    assert merge_data(base, override) == expected
    assert repr(base) == before  # inputs are not modified


# --- properties --------------------------------------------------------------------------

# (top-level targetRef, selects web-1 whose one inbound is {service: web, version: v1})
TOP_REFS = [
    (MESH, True),
    ({"kind": "MeshSubset", "tags": {"version": "v1"}}, True),
    ({"kind": "MeshSubset", "tags": {"version": "v2"}}, False),
    (svc("web"), True),
    (svc("payments"), False),
    ({"kind": "MeshServiceSubset", "name": "web", "tags": {"version": "v1"}}, True),
    ({"kind": "Dataplane", "name": "web-1"}, True),
    ({"kind": "Dataplane", "name": "web-2"}, False),
    ({"kind": "Dataplane", "name": "web-1", "tags": {"version": "v1"}}, True),
    ({"kind": "Dataplane", "name": "web-1", "tags": {"version": "v2"}}, False),
]
SPECIFICITY = {"Mesh": 0, "MeshSubset": 1, "MeshService": 2, "MeshServiceSubset": 3,
               "Dataplane": 4}
TO_REFS = [(MESH, True), (svc("backend"), True), (svc("db"), False)]
FIELDS = [("connectionTimeout",), ("idleTimeout",), ("http", "requestTimeout"),
          ("http", "streamIdleTimeout")]
NAMES = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf"]
ORIGINS = [None, "global", "zone"]


def _set(data: dict[str, Any], path: tuple[str, ...], value: str) -> None:
    for key in path[:-1]:
        data = data.setdefault(key, {})
    data[path[-1]] = value


def _get(data: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        data = data.get(key) or {}
    return data or None


@st.composite
def policy_sets(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Abstract MeshTimeout policies; each set field's value is unique to its item."""
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=6, unique=True))
    out = []
    for pi, name in enumerate(names):
        items = []
        for ii in range(draw(st.integers(1, 3))):
            to_index = draw(st.integers(0, len(TO_REFS) - 1))
            fields = draw(st.lists(st.integers(0, len(FIELDS) - 1), unique=True))
            default: dict[str, Any] = {}
            for fi in fields:
                _set(default, FIELDS[fi], f"{pi * 100 + ii * 10 + fi + 1}s")
            items.append({"to": to_index, "default": default, "index": ii})
        out.append({"name": name, "top": draw(st.integers(0, len(TOP_REFS) - 1)),
                    "origin": draw(st.sampled_from(ORIGINS)), "items": items})
    return out


def _resource(p: dict[str, Any]) -> Resource:
    return policy(p["name"], TOP_REFS[p["top"]][0], origin=p["origin"],
                  to=[to_(TO_REFS[it["to"]][0], **it["default"]) for it in p["items"]])


@settings(max_examples=200, deadline=None)
@given(policy_sets(), st.randoms(use_true_random=False))
def test_property_result_is_independent_of_input_order(
        abstract: list[dict[str, Any]], rnd: random.Random) -> None:
    resources = [_resource(p) for p in abstract]
    shuffled = list(resources)
    rnd.shuffle(shuffled)
    expected = match_policies(dataplane(), resources, destinations=["backend", "db"])
    assert match_policies(dataplane(), shuffled, destinations=["backend", "db"]) == expected
    assert match_policies(dataplane(), list(reversed(resources)),
                          destinations=["backend", "db"]) == expected


@settings(max_examples=300, deadline=None)
@given(policy_sets())
def test_property_most_specific_set_field_wins(abstract: list[dict[str, Any]]) -> None:
    # The rule, stated directly: among the items that reach backend and set a field, the
    # value comes from the one with the highest (to-specificity, top-specificity, origin,
    # name, position) -- independent of how the implementation sorts and folds.
    result = outbound([_resource(p) for p in abstract])
    for path in FIELDS:
        candidates = []
        for p in abstract:
            top, selects = TOP_REFS[p["top"]]
            if not selects:
                continue
            for it in p["items"]:
                to_ref, reaches = TO_REFS[it["to"]]
                value = _get(it["default"], path)
                if reaches and value is not None:
                    rank = (SPECIFICITY[to_ref["kind"]], SPECIFICITY[top["kind"]],
                            p["origin"] != "global", p["name"], it["index"])
                    candidates.append((rank, value))
        expected = max(candidates)[1] if candidates else None
        assert _get(result, path) == expected, path


durations = st.sampled_from(["1s", "2s", "5m", "250ms"])
timeout_confs = st.fixed_dictionaries({}, optional={
    "connectionTimeout": durations, "idleTimeout": durations,
    "http": st.fixed_dictionaries({}, optional={"requestTimeout": durations,
                                                "maxStreamDuration": durations})})


@settings(max_examples=200, deadline=None)
@given(timeout_confs, timeout_confs)
def test_property_merge_is_idempotent(a_data: dict[str, Any], b_data: dict[str, Any]) -> None:
    a, b = (MeshTimeoutConf.model_validate(d) for d in (a_data, b_data))
    ref_a, ref_b = PolicyRef("MeshTimeout", "a"), PolicyRef("MeshTimeout", "b")
    # x merged with itself is x, field for field
    assert conf_data(merge_confs([(ref_a, a), (ref_a, a)]).model(MeshTimeoutConf)) == a_data
    ab = merge_confs([(ref_a, a), (ref_b, b)]).model(MeshTimeoutConf)
    # applying b again changes nothing, and a merged result re-merges to itself
    assert merge_confs([(ref_a, a), (ref_b, b), (ref_b, b)]).conf == ab
    assert conf_data(merge_confs([(ref_a, ab)]).model(MeshTimeoutConf)) == conf_data(ab)
    # every field b sets is b's; every other field is a's
    merged = conf_data(ab)
    for path in [("connectionTimeout",), ("idleTimeout",), ("http", "requestTimeout"),
                 ("http", "maxStreamDuration")]:
        assert _get(merged, path) == (_get(b_data, path) or _get(a_data, path))


@settings(max_examples=150, deadline=None)
@given(policy_sets())
def test_property_effective_conf_is_a_fixed_point(abstract: list[dict[str, Any]]) -> None:
    # Adding the effective conf back as the most specific policy changes nothing.
    resources = [_resource(p) for p in abstract]
    effective = outbound(resources)
    pinned = policy("zz-pinned", {"kind": "Dataplane", "name": "web-1"}, origin="zone",
                    to=[to_(svc("backend"), **effective)]) if effective else None
    assert outbound(resources + ([pinned] if pinned else [])) == effective


SOURCE_REFS = [MESH, svc("frontend"), svc("other"), {"kind": "MeshSubset", "tags": {"env": "prod"}},
               {"kind": "MeshSubset", "tags": {"env": "dev"}},
               {"kind": "MeshServiceSubset", "name": "frontend", "tags": {"env": "prod"}}]
SOURCES = [{SVC: s, **({"env": e} if e else {})}
           for s in ("frontend", "other", "batch") for e in ("prod", "dev", None)]


FROM_FIELDS = ["idleTimeout", "connectionTimeout"]
# (name, top-level targetRef index, [(source targetRef index, [field indexes])])
from_policy_sets = st.lists(
    st.tuples(st.sampled_from(NAMES), st.integers(0, len(TOP_REFS) - 1),
              st.lists(st.tuples(st.integers(0, len(SOURCE_REFS) - 1),
                                 st.lists(st.integers(0, 1), unique=True)),
                       min_size=1, max_size=3)),
    min_size=1, max_size=5, unique_by=lambda t: t[0])


def _from_value(pi: int, ii: int, fi: int) -> str:
    return f"{pi * 100 + ii * 10 + fi + 1}s"


def _expected_for_source(abstract: list[Any], source: dict[str, str]) -> dict[str, Any]:
    """The most specific matching item's value for each field, found by brute force."""
    candidates: dict[str, list[Any]] = {}
    for pi, (name, top, items) in enumerate(abstract):
        top_ref, selects = TOP_REFS[top]
        for ii, (src, fs) in enumerate(items):
            ref = SOURCE_REFS[src]
            want = {**({SVC: ref["name"]} if "name" in ref else {}), **ref.get("tags", {})}
            if not selects or any(source.get(k) != v for k, v in want.items()):
                continue
            rank = (SPECIFICITY[ref["kind"]], SPECIFICITY[top_ref["kind"]], name, ii)
            for fi in fs:
                candidates.setdefault(FROM_FIELDS[fi], []).append((rank, _from_value(pi, ii, fi)))
    return {field: max(values)[1] for field, values in candidates.items()}


@settings(max_examples=200, deadline=None)
@given(from_policy_sets)
def test_property_first_matching_from_rule_is_the_merge_of_all_matching_items(
        abstract: list[Any]) -> None:
    resources = [policy(name, TOP_REFS[top][0], from_=[
        to_(SOURCE_REFS[src], **{FROM_FIELDS[fi]: _from_value(pi, ii, fi) for fi in fs})
        for ii, (src, fs) in enumerate(items)]) for pi, (name, top, items) in enumerate(abstract)]
    web = match_policies(dataplane(), resources).kind("MeshTimeout").inbound(8080)
    for source in SOURCES:
        merged = web.for_source(source)
        got = {} if merged is None else conf_data(merged.model(MeshTimeoutConf))
        assert got == _expected_for_source(abstract, source), source
