"""Inbound listeners: where other sidecars reach this proxy's workload, over mTLS.

One listener per Dataplane inbound, ``inbound:<address>:<port>``, on the inbound's
address (the Dataplane's ``networking.address`` unless the inbound sets one; a hostname
binds 0.0.0.0), with ``traffic_direction: INBOUND``.

- ``strict`` mesh mTLS: one filter chain whose TLS context demands a client certificate
  from the mesh (``tls.downstream_context``).
- ``permissive``: a TLS inspector and two filter chains, ``transport_protocol: tls``
  (the same mTLS chain) and ``raw_buffer`` (plaintext, for workloads not yet in the
  mesh). Plaintext peers have no identity, so only a ``Mesh``-wide permission admits them.

``gossamer.io/protocol`` picks the filters. A MeshRateLimit ``tcp`` connection rate
comes first whatever the protocol. HTTP (``http``, ``http2``, ``grpc``): an HTTP
connection manager (RBAC → local rate limit → faults → router) whose RDS route
configuration, named like the listener, sends everything to the local application
cluster ``localhost:<servicePort>`` (at ``serviceAddress``, default 127.0.0.1) with the
inbound's request timeouts. TCP: RBAC → ``tcp_proxy`` to that cluster.
Policies come from the inbound's confs (``confs.inbound``); permissions from
``rbac``.
"""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from gossamer.model.dataplane import Inbound
from gossamer.model.meshaccesslog import MeshAccessLogConf
from gossamer.model.meshcircuitbreaker import MeshCircuitBreakerConf
from gossamer.model.meshfaultinjection import MeshFaultInjectionConf
from gossamer.model.meshratelimit import MeshRateLimitConf
from gossamer.model.meshtimeout import MeshTimeoutConf
from proxy.context import ProxyContext
from proxy.envoy import (
    access_logs,
    confs,
    faults,
    filters,
    names,
    rate_limits,
    rbac,
    timeouts,
    tls,
)
from proxy.envoy.clusters import HTTP_PROTOCOLS, local_app_cluster
from proxy.envoy.http import HttpSettings, connection_manager
from proxy.envoy.protos import buffer_limit, listen_address, pack, socket_address, stat_prefix
from proxy.envoy.resources import Builder

TCP_PROXY = "envoy.filters.network.tcp_proxy"
TLS_INSPECTOR = "envoy.filters.listener.tls_inspector"
PERMISSIVE = "permissive"


def inbound_address(ctx: ProxyContext, ib: Inbound) -> str:
    return listen_address(ib.address or ctx.dataplane.networking.address)


def _route_config(name: str, service: str, cluster: str,
                  timeout: MeshTimeoutConf | None) -> route_pb2.RouteConfiguration:
    action = rc_pb2.RouteAction(cluster=cluster)
    timeouts.apply_to_route(action, timeout)
    route = rc_pb2.Route(name=f"{service}:0", match=rc_pb2.RouteMatch(prefix="/"),
                         route=action)
    return route_pb2.RouteConfiguration(name=name, virtual_hosts=[
        rc_pb2.VirtualHost(name=service, domains=["*"], routes=[route])])


def _http_filters(ctx: ProxyContext, ib: Inbound) -> list[hcm_pb2.HttpFilter]:
    perms = rbac.permissions(ctx.mesh, rbac.source_rules(ctx.policies, ib))
    out = [filters.http(rbac.HTTP_FILTER, rbac.http_filter(perms))]
    limit = rate_limits.http_filter(
        confs.inbound(ctx.policies, confs.RATE_LIMIT, MeshRateLimitConf, ib),
        stat_prefix(names.inbound(inbound_address(ctx, ib), ib.port)))
    if limit is not None:
        out.append(limit)
    out += faults.http_filters(
        confs.inbound(ctx.policies, confs.FAULT_INJECTION, MeshFaultInjectionConf, ib))
    return out


def _network_filters(ctx: ProxyContext, ib: Inbound, name: str, cluster: str,
                     tracing: hcm_pb2.HttpConnectionManager.Tracing | None,
                     out: Builder) -> list[lc_pb2.Filter]:
    prefix = stat_prefix(name)
    timeout = confs.inbound(ctx.policies, confs.TIMEOUT, MeshTimeoutConf, ib)
    logs, collectors = access_logs.access_logs(
        confs.inbound(ctx.policies, confs.ACCESS_LOG, MeshAccessLogConf, ib))
    for collector in collectors:
        out.cluster(collector)
    result = []
    limit = rate_limits.network_filter(
        confs.inbound(ctx.policies, confs.RATE_LIMIT, MeshRateLimitConf, ib), prefix)
    if limit is not None:
        result.append(limit)
    if ib.protocol in HTTP_PROTOCOLS:
        out.route(_route_config(name, ib.service, cluster, timeout))
        result.append(connection_manager(HttpSettings(
            stat_prefix=prefix, route_name=name, http_filters=_http_filters(ctx, ib),
            timeout=timeout, access_logs=logs, tracing=tracing)))
        return result
    perms = rbac.permissions(ctx.mesh, rbac.source_rules(ctx.policies, ib))
    result.append(filters.network(rbac.NETWORK_FILTER, rbac.network_filter(perms, prefix)))
    proxy = tcp_proxy_pb2.TcpProxy(stat_prefix=prefix, cluster=cluster, access_log=logs)
    timeouts.apply_to_tcp_proxy(proxy, timeout)
    result.append(filters.network(TCP_PROXY, proxy))
    return result


def inbound_chains(ctx: ProxyContext, ib: Inbound,
                   tracing: hcm_pb2.HttpConnectionManager.Tracing | None,
                   out: Builder) -> list[lc_pb2.FilterChain]:
    """The filter chains of ``ib``'s listener (two when permissive: TLS, then plaintext,
    told apart by ``transport_protocol``, which needs the TLS inspector); adds its route
    configuration and local cluster. The inbound capture listener uses them too."""
    address = inbound_address(ctx, ib)
    name = names.inbound(address, ib.port)
    service_address = ib.service_address or names.LOCALHOST
    service_port = ib.service_port or ib.port
    app = local_app_cluster(
        service_address, service_port, ib.protocol,
        confs.inbound(ctx.policies, confs.TIMEOUT, MeshTimeoutConf, ib),
        confs.inbound(ctx.policies, confs.CIRCUIT_BREAKER, MeshCircuitBreakerConf, ib))
    out.cluster(app)
    chain_filters = _network_filters(ctx, ib, name, app.name, tracing, out)
    alpn = tls.HTTP_ALPN if ib.protocol in HTTP_PROTOCOLS else ()
    secure = lc_pb2.FilterChain(
        filters=chain_filters,
        transport_socket=tls.transport_socket(tls.downstream_context(alpn)))
    if ctx.mtls_mode != PERMISSIVE:
        return [secure]
    secure.filter_chain_match.transport_protocol = "tls"
    plain = lc_pb2.FilterChain(
        filters=chain_filters,
        filter_chain_match=lc_pb2.FilterChainMatch(transport_protocol="raw_buffer"))
    return [secure, plain]


def tls_inspector() -> lc_pb2.ListenerFilter:
    return lc_pb2.ListenerFilter(name=TLS_INSPECTOR,
                                 typed_config=pack(tls_inspector_pb2.TlsInspector()))


def inbound_listener(ctx: ProxyContext, ib: Inbound,
                     tracing: hcm_pb2.HttpConnectionManager.Tracing | None,
                     out: Builder) -> None:
    """Add the listener of ``ib``, its route configuration and its local cluster."""
    address = inbound_address(ctx, ib)
    name = names.inbound(address, ib.port)
    listener = listener_pb2.Listener(
        name=name, address=socket_address(address, ib.port),
        traffic_direction=base_pb2.INBOUND, stat_prefix=stat_prefix(name),
        filter_chains=inbound_chains(ctx, ib, tracing, out),
        per_connection_buffer_limit_bytes=buffer_limit())
    if ctx.mtls_mode == PERMISSIVE:
        listener.listener_filters.append(tls_inspector())
    out.listener(listener)
