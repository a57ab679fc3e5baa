"""Envoy resource generation (proxy.envoy): routes and listeners (HTTP route precedence,
tag splits, Prometheus listeners, inbound addresses and local clusters), and that the
generator package stays pure.
"""

from __future__ import annotations

from pathlib import Path

from google.protobuf.json_format import MessageToDict

from proxy.context import ADMIN_CLUSTER
from tests.unit.envoy_scenarios import generated, scenario


def test_http_routes_follow_gateway_precedence() -> None:
    route_config = generated(scenario("http-route")).routes["outbound:backend"]
    matches = [MessageToDict(r.match) for r in route_config.virtual_hosts[0].routes]
    paths = [m.get("path") or m.get("pathSeparatedPrefix") or m.get("prefix")
             or "regex" for m in matches]
    assert paths == ["/login", "/old", "regex", "/gone", "/api", "/v1", "/", "/"]
    assert matches[-1] == {"prefix": "/"}


def test_split_by_tags_uses_subset_clusters() -> None:
    res = generated(scenario("http-route"))
    api = next(r for r in res.routes["outbound:backend"].virtual_hosts[0].routes
               if r.match.path_separated_prefix == "/api")
    weights = {c.name: c.weight.value for c in api.route.weighted_clusters.clusters}
    assert sorted(weights.values()) == [20, 80]
    for name in weights:
        assert name.startswith("backend__") and name in res.clusters
        assert res.clusters[name].eds_cluster_config.service_name == name
        assert res.endpoints[name].cluster_name == name
    v1 = next(n for n, w in weights.items() if w == 80)
    assert [e.endpoint.address.socket_address.address
            for loc in res.endpoints[v1].endpoints for e in loc.lb_endpoints] == ["10.0.0.2"]


def test_envoy_package_is_pure() -> None:
    import ast

    package = Path(__file__).parents[2] / "proxy" / "envoy"
    banned = {"asyncio", "grpc", "socket", "asyncpg", "subprocess"}
    for module in package.glob("*.py"):
        tree = ast.parse(module.read_text())
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not {n.split(".")[0] for n in names} & banned, f"{module.name}: {names}"


def test_prometheus_listener_scrapes_the_admin_cluster() -> None:
    res = generated(scenario("metric"))
    assert {n for n in res.listeners if n.startswith("prometheus:")} == {
        "prometheus:5670", "prometheus:5671", "prometheus:5672"}
    scrape = res.routes["prometheus:5670"].virtual_hosts[0].routes[0]
    assert scrape.match.path == "/metrics"
    assert scrape.route.cluster == ADMIN_CLUSTER
    assert scrape.route.prefix_rewrite.startswith("/stats/prometheus?usedonly&filter=")
    assert not res.listeners["prometheus:5670"].filter_chains[0].HasField("transport_socket")
    assert res.listeners["prometheus:5671"].filter_chains[0].HasField("transport_socket")


def test_inbound_addresses_and_local_clusters() -> None:
    res = generated(scenario("inbounds"))
    assert set(res.listeners) == {"inbound:0.0.0.0:19090", "inbound:10.0.0.21:18443",
                                  "inbound:0.0.0.0:16379"}
    assert set(res.clusters) == {"local:10.0.0.20:9090", "localhost:18443", "localhost:16379"}
    grpc_app = MessageToDict(res.clusters["local:10.0.0.20:9090"],
                             preserving_proto_field_name=True)
    options = grpc_app["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert "http2_protocol_options" in options["explicit_http_config"]
    assert "typed_extension_protocol_options" not in MessageToDict(
        res.clusters["localhost:16379"])

