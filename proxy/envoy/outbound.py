"""Outbound listeners, their routes, and the clusters and load assignments they use.

One listener per ``OutboundListener``, ``outbound:<address>:<port>``, with
``traffic_direction: OUTBOUND``. The destination ``Service.protocol`` picks the filter:

- HTTP (``http``, ``http2``, ``grpc``): an HTTP connection manager (outbound faults →
  router) with the destination's timeouts, access logs and the proxy's tracing, routing
  by RDS with ``outbound:<service>`` (``routes``);
- TCP: a ``tcp_proxy`` to the service cluster (or MeshTCPRoute's weighted backends), with
  idle timeout, connect attempts (MeshRetry ``tcp``), source-IP hashing and access logs.

Every backend a listener may send to gets its cluster (``clusters.outbound_cluster``)
and load assignment (``endpoints.endpoints``), built from the backend service's own
merged ``to[]`` confs, through the ``PieceCache`` when one is given. A listener on one
port of a service with several sends to that port's cluster, and its protocol is that
port's (``ports``). The destination of an external service's VIP (``Service.external``)
gets the same filter, with its MeshHTTPRoute rules (which send to it alone), and its own
cluster (``external``).
"""

from __future__ import annotations

from typing import TypeAlias

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from gossamer.model.meshaccesslog import MeshAccessLogConf
from gossamer.model.meshfaultinjection import MeshFaultInjectionConf
from gossamer.model.meshloadbalancingstrategy import MeshLoadBalancingStrategyConf
from gossamer.model.meshretry import MeshRetryConf
from gossamer.model.meshtimeout import MeshTimeoutConf
from proxy.context import OutboundListener, ProxyContext, Service
from proxy.envoy import (
    access_logs,
    confs,
    faults,
    filters,
    load_balancing,
    names,
    retries,
    routes,
    timeouts,
)
from proxy.envoy.cache import PieceCache
from proxy.envoy.clusters import HTTP_PROTOCOLS, Destination, outbound_cluster
from proxy.envoy.confs import ClusterConfs
from proxy.envoy.endpoints import Hosts, endpoints
from proxy.envoy.external import external_cluster, gone_external
from proxy.envoy.http import HttpSettings, connection_manager
from proxy.envoy.load_balancing import Locality
from proxy.envoy.ports import at_port, port_of
from proxy.envoy.protos import buffer_limit, socket_address, stat_prefix
from proxy.envoy.resources import Builder
from proxy.envoy.routes import Backend

TCP_PROXY = "envoy.filters.network.tcp_proxy"
Tracing: TypeAlias = hcm_pb2.HttpConnectionManager.Tracing


def service_of(ctx: ProxyContext, name: str) -> Service:
    """The destination ``name``; one the context does not know has no endpoints yet."""
    return ctx.services.get(name) or Service(name=name)


def proxy_tags(ctx: ProxyContext) -> dict[str, str]:
    """This proxy's tags (first inbound wins a key), for locality affinity."""
    tags: dict[str, str] = {}
    for ib in ctx.dataplane.networking.inbound:
        for key, value in ib.tags.items():
            tags.setdefault(key, value)
    return tags


def backend_pieces(ctx: ProxyContext, backend: Backend, cache: PieceCache | None = None
                   ) -> tuple[cluster_pb2.Cluster, endpoint_pb2.ClusterLoadAssignment]:
    """The cluster and load assignment of ``backend`` (a service, a tagged subset or one
    port of it) for this proxy, from ``cache`` when it holds them for the same inputs."""
    service = at_port(service_of(ctx, backend.service), backend.port)
    destination = Destination(ctx.mesh, service.name, service.protocol, backend.subset,
                              backend.port, backend.zone)
    cluster_confs = ClusterConfs.of(ctx.policies, service.name)
    hosts = (Hosts.of(service, backend.subset) if cache is None
             else cache.hosts(service, backend.subset,
                              lambda: Hosts.of(service, backend.subset)))
    if backend.zone:
        hosts = hosts.pinned(backend.zone, ctx.zone)
    lb = confs.outbound(ctx.policies, confs.LOAD_BALANCING, MeshLoadBalancingStrategyConf,
                        service.name)
    locality = Locality.of(lb, proxy_tags(ctx), ctx.zone)
    name = destination.name
    if cache is None:
        return (outbound_cluster(destination, cluster_confs),
                endpoints(name, hosts, ctx.zone, locality))
    return (cache.get(("cluster", destination, cluster_confs),
                      lambda: outbound_cluster(destination, cluster_confs)),
            cache.get(("endpoints", name, hosts, ctx.zone, locality),
                      lambda: endpoints(name, hosts, ctx.zone, locality)))


def _settle(ctx: ProxyContext, service: Service) -> routes.Settle:
    timeout = confs.outbound(ctx.policies, confs.TIMEOUT, MeshTimeoutConf, service.name)
    retry = retries.retry_policy(
        confs.outbound(ctx.policies, confs.RETRY, MeshRetryConf, service.name), service.protocol)
    lb = confs.outbound(ctx.policies, confs.LOAD_BALANCING, MeshLoadBalancingStrategyConf,
                        service.name)
    hashes = load_balancing.route_hash_policies(lb)

    def settle(action: rc_pb2.RouteAction) -> None:
        timeouts.apply_to_route(action, timeout)
        if retry is not None:
            action.retry_policy.CopyFrom(retry)
        action.hash_policy.extend(hashes)

    return settle


def _logs(ctx: ProxyContext, service: str, out: Builder) -> list[accesslog_pb2.AccessLog]:
    logs, collectors = access_logs.access_logs(
        confs.outbound(ctx.policies, confs.ACCESS_LOG, MeshAccessLogConf, service))
    for collector in collectors:
        out.cluster(collector)
    return logs


def _http_filter(ctx: ProxyContext, service: Service, name: str, tracing: Tracing | None,
                 out: Builder, port: int | None, zone: str = ""
                 ) -> tuple[lc_pb2.Filter, set[Backend]]:
    # A zone-pinned name sends to that zone's instances of the service only: no
    # MeshHTTPRoute or MeshTCPRoute may take its traffic to other backends.
    config, backends = routes.outbound_route_config(
        service.name,
        () if zone else confs.outbound_rules(ctx.policies, confs.HTTP_ROUTE, service.name),
        () if zone else confs.outbound_rules(ctx.policies, confs.TCP_ROUTE, service.name),
        _settle(ctx, service), port, zone)
    out.route(config)
    fault = confs.outbound(ctx.policies, confs.FAULT_INJECTION, MeshFaultInjectionConf,
                           service.name)
    hcm = connection_manager(HttpSettings(
        stat_prefix=stat_prefix(name), route_name=config.name,
        http_filters=faults.http_filters(fault),
        timeout=confs.outbound(ctx.policies, confs.TIMEOUT, MeshTimeoutConf, service.name),
        access_logs=_logs(ctx, service.name, out), tracing=tracing))
    return hcm, backends


def _tcp_filter(ctx: ProxyContext, service: Service, name: str,
                out: Builder, port: int | None, zone: str = ""
                ) -> tuple[lc_pb2.Filter, set[Backend]]:
    chosen = [] if zone else routes.tcp_backends(
        confs.outbound_rules(ctx.policies, confs.TCP_ROUTE, service.name))
    chosen = chosen or [(Backend(service.name, port=port, zone=zone), 1)]
    proxy = tcp_proxy_pb2.TcpProxy(stat_prefix=stat_prefix(name),
                                   access_log=_logs(ctx, service.name, out))
    if not routes.set_tcp_backends(proxy, chosen):
        chosen = [(Backend(service.name, port=port), 1)]  # every weight 0: only the service
        routes.set_tcp_backends(proxy, chosen)
    timeouts.apply_to_tcp_proxy(
        proxy, confs.outbound(ctx.policies, confs.TIMEOUT, MeshTimeoutConf, service.name))
    retries.apply_to_tcp_proxy(
        proxy, confs.outbound(ctx.policies, confs.RETRY, MeshRetryConf, service.name))
    load_balancing.apply_to_tcp_proxy(proxy, confs.outbound(
        ctx.policies, confs.LOAD_BALANCING, MeshLoadBalancingStrategyConf, service.name))
    return filters.network(TCP_PROXY, proxy), {b for b, w in chosen if w > 0}


def outbound_filter(ctx: ProxyContext, outbound: OutboundListener, tracing: Tracing | None,
                    out: Builder, cache: PieceCache | None = None) -> lc_pb2.Filter:
    """The network filter of ``outbound``'s listener; adds everything it routes to.
    The transparent proxy's capture listener uses it too (``transparent``)."""
    whole = service_of(ctx, outbound.service)
    port = port_of(whole, outbound.port)  # one port of a service with several
    service = at_port(whole, port)
    name = names.outbound_listener(outbound.address, outbound.port)
    if service.protocol in HTTP_PROTOCOLS:
        chain_filter, backends = _http_filter(ctx, service, name, tracing, out, port,
                                              outbound.zone)
    else:
        chain_filter, backends = _tcp_filter(ctx, service, name, out, port, outbound.zone)
    if outbound.external or whole.external is not None:  # its one backend is itself
        out.cluster(external_cluster(whole.external or gone_external(outbound),
                                     ClusterConfs.of(ctx.policies, whole.name)))
        return chain_filter
    for backend in sorted(backends, key=lambda b: (b.service, b.subset, b.port or 0, b.zone)):
        cluster, assignment = backend_pieces(ctx, backend, cache)
        out.cluster(cluster)
        out.load_assignment(assignment)
    return chain_filter


def outbound_listener(ctx: ProxyContext, outbound: OutboundListener, tracing: Tracing | None,
                      out: Builder, cache: PieceCache | None = None) -> None:
    """Add the listener for ``outbound`` and everything it routes to."""
    chain_filter = outbound_filter(ctx, outbound, tracing, out, cache)
    name = names.outbound_listener(outbound.address, outbound.port)
    out.listener(listener_pb2.Listener(
        name=name, address=socket_address(outbound.address, outbound.port),
        traffic_direction=base_pb2.OUTBOUND, stat_prefix=stat_prefix(name),
        filter_chains=[lc_pb2.FilterChain(filters=[chain_filter])],
        per_connection_buffer_limit_bytes=buffer_limit()))

