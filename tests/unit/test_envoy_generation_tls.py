"""Envoy resource generation (proxy.envoy): resource order, and the TLS of outbound clusters
and listeners (mesh mTLS to the service identity, TLS 1.3 only inside the mesh, TLS 1.2
kept toward non-mesh peers).
"""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf.json_format import MessageToDict

from proxy.context import IDENTITY_SECRET, PROMETHEUS_TLS_SECRET, sni, spiffe
from proxy.envoy.clusters import http_collector
from proxy.envoy.resources import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE
from tests.unit.envoy_inputs import MESH
from tests.unit.envoy_scenarios import (
    SCENARIO_NAMES,
    SCENARIOS,
    TLS_CONTEXT_TYPES,
    Scenario,
    as_data,
    generated,
    scenario,
)


def test_resources_iterate_by_type_then_name() -> None:
    res = generated(scenario("http"))
    items = list(res.items())
    types = [t for t, _, _ in items]
    assert types == sorted(types, key=[CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE,
                                       ROUTE_TYPE].index)
    assert {n for t, n, _ in items if t == LISTENER_TYPE} == {
        "inbound:10.0.0.1:18080", "outbound:127.0.0.1:20001"}
    assert {n for t, n, _ in items if t == CLUSTER_TYPE} == {"backend", "localhost:8080"}
    assert {n for t, n, _ in items if t == ROUTE_TYPE} == {
        "inbound:10.0.0.1:18080", "outbound:backend"}


def test_outbound_cluster_is_mtls_to_the_service_identity() -> None:
    cluster = generated(scenario("http")).clusters["backend"]
    data = MessageToDict(cluster, preserving_proto_field_name=True)
    tls = data["transport_socket"]["typed_config"]
    assert tls["sni"] == sni("backend", MESH)
    sans = tls["common_tls_context"]["combined_validation_context"][
        "default_validation_context"]["match_typed_subject_alt_names"]
    assert sans == [{"san_type": "URI", "matcher": {"exact": spiffe(MESH, "backend")}}]
    assert data["eds_cluster_config"]["service_name"] == "backend"


TLS13_ONLY = {"tls_minimum_protocol_version": "TLSv1_3",
              "tls_maximum_protocol_version": "TLSv1_3"}


def tls_contexts(node: Any, where: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every TLS context in generated data, with the resource it sits in."""
    if isinstance(node, list):
        return [found for item in node for found in tls_contexts(item, where)]
    if not isinstance(node, dict):
        return []
    here = [(where, node)] if node.get("@type") in TLS_CONTEXT_TYPES else []
    return here + [found for key, value in node.items()
                   for found in tls_contexts(value, where or str(key))]


def is_mesh_mtls(context: dict[str, Any]) -> bool:
    """Mesh mTLS presents the workload identity from SDS (an operator's certificate for
    non-mesh clients, or a collector's server-only TLS, does not)."""
    common = context.get("common_tls_context", {})
    return any(s["name"] == IDENTITY_SECRET
               for s in common.get("tls_certificate_sds_secret_configs", []))


@pytest.mark.parametrize("scenario", SCENARIOS, ids=SCENARIO_NAMES)
def test_mesh_mtls_is_tls13_only(scenario: Scenario) -> None:
    """Under TLS 1.2 both peers' certificates cross the network (and, cross-zone, the
    WAN) in clear: every mesh mTLS context, inbound and outbound, is TLS 1.3 only."""
    data = as_data(generated(scenario))
    mesh = [(where, c) for where, c in tls_contexts(data) if is_mesh_mtls(c)]
    inbound = [c for where, c in mesh if c["@type"].endswith("DownstreamTlsContext")]
    outbound = [c for where, c in mesh if c["@type"].endswith("UpstreamTlsContext")]
    assert inbound, "every scenario has an mTLS inbound"
    # Every outbound cluster is to a mesh service (EDS) and carries a mesh context.
    assert len(outbound) == sum(c.get("type") == "EDS" for c in data["clusters"].values())
    for where, context in mesh:
        assert context["common_tls_context"].get("tls_params") == TLS13_ONLY, where


def test_tls_toward_non_mesh_peers_keeps_tls12() -> None:
    """An operator's certificate served to a non-mesh scraper, and an HTTPS collector,
    are not mesh mTLS: their peers may not speak TLS 1.3."""
    data = as_data(generated(scenario("metric")))
    [(where, provided)] = [(w, c) for w, c in tls_contexts(data) if not is_mesh_mtls(c)]
    assert where == "listeners"
    assert provided["common_tls_context"]["tls_certificate_sds_secret_configs"][0][
        "name"] == PROMETHEUS_TLS_SECRET
    assert provided["common_tls_context"]["tls_params"] == {
        "tls_minimum_protocol_version": "TLSv1_2"}
    collector = MessageToDict(http_collector("zipkin", "https://zipkin.example:9411/api"),
                              preserving_proto_field_name=True)
    [(_, upstream)] = tls_contexts(collector)
    assert not is_mesh_mtls(upstream) and "tls_params" not in upstream.get(
        "common_tls_context", {})

