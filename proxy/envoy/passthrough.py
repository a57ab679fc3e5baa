"""What a transparent proxy lets through to destinations outside the mesh (MeshPassthrough).

The outbound capture listener (``proxy.envoy.transparent``) sends a connection to a mesh
service by its chains; anything else is passthrough, decided here:

- ``All`` (the Mesh's ``networking.outbound.passthrough: true`` when no MeshPassthrough
  selects the proxy): the listener's default chain, a ``tcp_proxy`` to the original
  destination;
- ``None`` (``passthrough: false``): no default chain, and Envoy closes the connection;
- ``Matched``: no default chain, and one chain per match:

  - ``IP``/``CIDR``: ``prefix_ranges`` (and ``destination_port`` when the match has one)
    → ``tcp_proxy`` to the original destination;
  - ``Domain`` over ``tls``: one chain per port with every such domain in
    ``server_names`` (the TLS SNI) and ``transport_protocol: tls`` → ``tcp_proxy``; the
    connection stays the workload's TLS, end to end;
  - ``Domain`` over ``http``/``http2``/``grpc``: one chain per port with
    ``transport_protocol: raw_buffer`` and an HTTP connection manager whose route
    configuration (``passthrough:<port>``, by RDS like every other) has one virtual host
    per domain (``Host`` with or without the port) routing to the original destination
    (over HTTP/2 for ``http2`` and ``grpc``); any other ``Host`` gets 404.

A domain match needs the TLS inspector to tell TLS from plaintext and read the SNI; it
runs only for connections to the ports of domain matches (``filter_disabled`` for the
rest), so a server-first protocol on another port (MySQL, SMTP) never waits for bytes the
client will not send. A match on an address and port that a mesh chain already claims is
left out: Envoy refuses two chains with one match, and the mesh's chain wins anyway.
Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Iterable, Sequence

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc_pb2
from envoy.config.route.v3 import route_components_pb2 as rc_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as upstream_http_pb2
from envoy.type.v3 import range_pb2

from gossamer.model.meshpassthrough import (
    HTTP_MATCH_PROTOCOLS,
    MatchProtocol,
    MatchType,
    MeshPassthroughConf,
    PassthroughMatch,
    PassthroughMode,
)
from proxy.envoy import filters
from proxy.envoy.http import HttpSettings, connection_manager
from proxy.envoy.inbound import tls_inspector
from proxy.envoy.protos import buffer_limit, duration, pack, stat_prefix, u32
from proxy.envoy.resources import Builder

PASSTHROUGH_CLUSTER = "gossamer_passthrough"
PASSTHROUGH_H2_CLUSTER = "gossamer_passthrough_h2"
CONNECT_TIMEOUT = "5s"
TCP_PROXY = "envoy.filters.network.tcp_proxy"
HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
NOT_FOUND = 404


def effective_mode(conf: MeshPassthroughConf | None, mesh_allows: bool) -> PassthroughMode:
    """The proxy's passthrough: its MeshPassthrough's, else the Mesh's allow or deny."""
    if conf is not None:
        return conf.mode()
    return PassthroughMode.ALL if mesh_allows else PassthroughMode.NONE


def passthrough_cluster(http2: bool = False) -> cluster_pb2.Cluster:
    """Connects to the connection's original destination (restored by ``original_dst``);
    the HTTP/2 one speaks HTTP/2 to it, for ``http2`` and ``grpc`` domain matches."""
    cluster = cluster_pb2.Cluster(
        name=PASSTHROUGH_H2_CLUSTER if http2 else PASSTHROUGH_CLUSTER,
        type=cluster_pb2.Cluster.ORIGINAL_DST, lb_policy=cluster_pb2.Cluster.CLUSTER_PROVIDED,
        connect_timeout=duration(CONNECT_TIMEOUT),
        per_connection_buffer_limit_bytes=buffer_limit())
    if http2:
        options = upstream_http_pb2.HttpProtocolOptions()
        options.explicit_http_config.http2_protocol_options.SetInParent()
        cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].CopyFrom(pack(options))
    return cluster


def tcp_to(cluster: str, name: str) -> lc_pb2.Filter:
    return filters.network(TCP_PROXY, tcp_proxy_pb2.TcpProxy(
        stat_prefix=stat_prefix(name), cluster=cluster))


def _address_chain(match: PassthroughMatch, listener: str) -> tuple[lc_pb2.FilterChain,
                                                                     tuple[str, int, int]]:
    network = ipaddress.ip_network(match.value, strict=True)
    name = f"{listener}:passthrough:{network}:{match.port or '*'}"
    chain_match = lc_pb2.FilterChainMatch()
    chain_match.prefix_ranges.add(address_prefix=str(network.network_address),
                                  prefix_len=u32(network.prefixlen))
    if match.port is not None:
        chain_match.destination_port.value = match.port
    key = (str(network.network_address), network.prefixlen, match.port or 0)
    return lc_pb2.FilterChain(name=name, filter_chain_match=chain_match,
                              filters=[tcp_to(PASSTHROUGH_CLUSTER, name)]), key


def _tls_chain(port: int, domains: Sequence[str], listener: str) -> lc_pb2.FilterChain:
    name = f"{listener}:passthrough:tls:{port}"
    return lc_pb2.FilterChain(
        name=name, filters=[tcp_to(PASSTHROUGH_CLUSTER, name)],
        filter_chain_match=lc_pb2.FilterChainMatch(
            destination_port=u32(port), server_names=sorted(domains),
            transport_protocol="tls"))


def _http_chain(port: int, matches: Sequence[PassthroughMatch], listener: str,
                out: Builder) -> lc_pb2.FilterChain:
    name = f"{listener}:passthrough:http:{port}"
    route_name = f"passthrough:{port}"
    hosts = []
    for match in sorted(matches, key=lambda m: m.value):
        http2 = match.protocol is not MatchProtocol.HTTP
        cluster = PASSTHROUGH_H2_CLUSTER if http2 else PASSTHROUGH_CLUSTER
        out.cluster(passthrough_cluster(http2))
        hosts.append(rc_pb2.VirtualHost(
            name=match.value, domains=[match.value, f"{match.value}:{port}"],
            routes=[rc_pb2.Route(match=rc_pb2.RouteMatch(prefix="/"),
                                 route=rc_pb2.RouteAction(cluster=cluster))]))
    hosts.append(rc_pb2.VirtualHost(name="unmatched", domains=["*"], routes=[rc_pb2.Route(
        match=rc_pb2.RouteMatch(prefix="/"),
        direct_response=rc_pb2.DirectResponseAction(status=NOT_FOUND))]))
    out.route(route_pb2.RouteConfiguration(name=route_name, virtual_hosts=hosts))
    return lc_pb2.FilterChain(
        name=name, filters=[connection_manager(HttpSettings(stat_prefix=stat_prefix(name),
                                                            route_name=route_name))],
        filter_chain_match=lc_pb2.FilterChainMatch(destination_port=u32(port),
                                                   transport_protocol="raw_buffer"))


def _inspector_for(ports: Iterable[int]) -> lc_pb2.ListenerFilter:
    """The TLS inspector, on for connections to ``ports`` only."""
    inspector = tls_inspector()
    wanted = lc_pb2.ListenerFilterChainMatchPredicate()
    for port in sorted(set(ports)):
        wanted.or_match.rules.add().destination_port_range.CopyFrom(
            range_pb2.Int32Range(start=port, end=port + 1))
    if len(wanted.or_match.rules) == 1:
        wanted = wanted.or_match.rules[0]
    inspector.filter_disabled.not_match.CopyFrom(wanted)
    return inspector


def matched_chains(conf: MeshPassthroughConf, claimed: set[tuple[str, int]], listener: str,
                   out: Builder) -> tuple[list[lc_pb2.FilterChain], lc_pb2.ListenerFilter | None]:
    """The chains of ``Matched`` passthrough, and the TLS inspector its domains need (see
    the module doc). ``claimed``: the (address, port) pairs mesh chains hold."""
    chains: list[lc_pb2.FilterChain] = []
    keys: set[tuple[str, int, int]] = set()
    tls: dict[int, set[str]] = defaultdict(set)
    http: dict[int, dict[str, PassthroughMatch]] = defaultdict(dict)
    for match in conf.matches or ():
        if match.type is not MatchType.DOMAIN:
            chain, key = _address_chain(match, listener)
            single = key[1] == (32 if ":" not in key[0] else 128)
            if key in keys or (single and (key[0], key[2]) in claimed):
                continue
            keys.add(key)
            chains.append(chain)
            out.cluster(passthrough_cluster())
            continue
        port = match.default_port()
        assert port is not None  # a domain always has one
        if match.protocol in HTTP_MATCH_PROTOCOLS:
            http[port].setdefault(match.value, match)
        else:
            tls[port].add(match.value)
    for port, domains in sorted(tls.items()):
        chains.append(_tls_chain(port, sorted(domains), listener))
        out.cluster(passthrough_cluster())
    for port, by_domain in sorted(http.items()):
        chains.append(_http_chain(port, list(by_domain.values()), listener, out))
    ports = [*tls, *http]
    return chains, (_inspector_for(ports) if ports else None)
