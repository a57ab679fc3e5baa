"""MeshPassthrough on the transparent proxy's outbound capture listener
(``proxy.envoy.passthrough``): the mode against the Mesh's default, the chains of each
match kind, the TLS inspector only where a domain needs it, mesh chains first.
"""

from __future__ import annotations

import dataclasses

from envoy.config.listener.v3 import listener_pb2

from proxy.envoy import ProxyResources, generate
from proxy.envoy import transparent as tp
from proxy.envoy.passthrough import PASSTHROUGH_H2_CLUSTER
from tests.unit.envoy_inputs import ALLOW_ALL, Scenario
from tests.unit.envoy_scenarios import context
from tests.unit.test_envoy_transparent import WEB_TRANSPARENT, chains_by_name, tcp_cluster

MATCHES = """
type: MeshPassthrough
name: outside
mesh: default
spec:
  targetRef: {kind: Mesh}
  default:
%s
"""


def generated(default: str | None, mesh_allows: bool = True) -> ProxyResources:
    policies = (ALLOW_ALL,) if default is None else (ALLOW_ALL, MATCHES % default)
    ctx = context(Scenario("p", WEB_TRANSPARENT, policies=policies))
    return generate(dataclasses.replace(ctx, passthrough=mesh_allows))


def capture(res: ProxyResources) -> listener_pb2.Listener:
    return res.listeners[tp.OUTBOUND_LISTENER]


def passthrough_chains(res: ProxyResources) -> dict[str, listener_pb2.FilterChain]:
    return {n: c for n, c in chains_by_name(capture(res)).items() if ":passthrough:" in n}


def test_without_a_policy_the_mesh_decides() -> None:
    assert capture(generated(None, mesh_allows=True)).HasField("default_filter_chain")
    denied = capture(generated(None, mesh_allows=False))
    assert not denied.HasField("default_filter_chain")
    assert not passthrough_chains(generated(None, mesh_allows=False))


def test_the_policy_overrides_the_mesh_either_way() -> None:
    assert capture(generated("    passthroughMode: All", mesh_allows=False)).HasField(
        "default_filter_chain")
    none = generated("    passthroughMode: None", mesh_allows=True)
    assert not capture(none).HasField("default_filter_chain")
    assert not passthrough_chains(none)
    # Matched is the default mode of a policy: only its matches pass
    matched = generated("    matches: [{type: IP, value: 203.0.113.7, port: 443}]")
    assert not capture(matched).HasField("default_filter_chain")
    assert list(passthrough_chains(matched)) == [
        f"{tp.OUTBOUND_LISTENER}:passthrough:203.0.113.7/32:443"]


def test_each_match_kind_gets_its_chain() -> None:
    res = generated("""    passthroughMode: Matched
    matches:
      - {type: CIDR, value: 198.51.100.0/24}
      - {type: IP, value: 203.0.113.7, port: 5432}
      - {type: Domain, value: api.example.com, protocol: tls}
      - {type: Domain, value: "*.cdn.example.com", protocol: tls}
      - {type: Domain, value: example.org, protocol: http}
      - {type: Domain, value: grpc.example.org, protocol: grpc}
      - {type: Domain, value: legacy.example.net, protocol: http, port: 8080}""")
    chains = passthrough_chains(res)
    cidr = chains[f"{tp.OUTBOUND_LISTENER}:passthrough:198.51.100.0/24:*"]
    assert [(r.address_prefix, r.prefix_len.value)
            for r in cidr.filter_chain_match.prefix_ranges] == [("198.51.100.0", 24)]
    assert not cidr.filter_chain_match.HasField("destination_port")
    assert tcp_cluster(cidr) == tp.PASSTHROUGH_CLUSTER
    tls = chains[f"{tp.OUTBOUND_LISTENER}:passthrough:tls:443"].filter_chain_match
    assert (list(tls.server_names), tls.transport_protocol, tls.destination_port.value) == (
        ["*.cdn.example.com", "api.example.com"], "tls", 443)
    http80 = chains[f"{tp.OUTBOUND_LISTENER}:passthrough:http:80"]
    assert http80.filter_chain_match.transport_protocol == "raw_buffer"
    routes = res.routes["passthrough:80"]
    by_host = {vh.name: (list(vh.domains), vh.routes[0]) for vh in routes.virtual_hosts}
    assert by_host["example.org"][0] == ["example.org", "example.org:80"]
    assert by_host["example.org"][1].route.cluster == tp.PASSTHROUGH_CLUSTER
    assert by_host["grpc.example.org"][1].route.cluster == PASSTHROUGH_H2_CLUSTER
    assert by_host["unmatched"][1].direct_response.status == 404
    assert PASSTHROUGH_H2_CLUSTER in res.clusters
    assert "passthrough:8080" in res.routes
    # The TLS inspector runs for the domains' ports only.
    inspector = capture(res).listener_filters[-1]
    assert inspector.name == "envoy.filters.listener.tls_inspector"
    ports = sorted(rule.destination_port_range.start
                   for rule in inspector.filter_disabled.not_match.or_match.rules)
    assert ports == [80, 443, 8080]


def test_an_address_a_mesh_chain_claims_stays_the_mesh_s() -> None:
    # 10.0.0.6:15432 is one of db's instances, a mesh chain already
    res = generated("    matches: [{type: IP, value: 10.0.0.6, port: 15432}, "
                    "{type: IP, value: 10.0.0.6}]")
    names = set(passthrough_chains(res))
    assert names == {f"{tp.OUTBOUND_LISTENER}:passthrough:10.0.0.6/32:*"}
    assert tcp_cluster(chains_by_name(capture(res))["db:10.0.0.6:15432"]) == "db"


def test_no_domain_match_means_no_inspector() -> None:
    res = generated("    matches: [{type: CIDR, value: 10.9.0.0/16}]")
    assert [f.name for f in capture(res).listener_filters] == [tp.ORIGINAL_DST]
