"""Policy merging (gossamer.policy): lists replaced, dicts merged key by key, model defaults
never overriding explicit values, invalid merges, default-only and route kinds, the real
route and trace kinds, and table-driven ``merge_data`` cases.
"""

from __future__ import annotations

from typing import Any

import pytest

from gossamer.model.base import Resource
from gossamer.model.registry import parse_document
from gossamer.policy import PolicyRef, match_policies, merge_data
from gossamer.policy.merge import conf_data
from tests.unit.policy_matching_kinds import MESH, ListConf, dataplane, policy, svc, to_


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

