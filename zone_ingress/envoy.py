"""The zone ingress's Envoy resources: SNI in, a local service's sidecars out, TLS untouched.

``generate_ingress(IngressContext) -> ProxyResources`` is pure. Other zones' sidecars
open mTLS to ``<advertised address>:<port>`` with SNI ``<service>.<mesh>.mesh``
(``proxy.context.sni``); the ingress reads that name from the ClientHello and forwards
the connection's bytes, still encrypted, to one of the service's local sidecars, whose
inbound listener terminates the mTLS. So:

- one listener, ``ingress:<address>:<port>``, on the ZoneIngress's ``networking.address``
  (``0.0.0.0`` for ``--listen 0.0.0.0:...``), with the TLS inspector as its only listener
  filter;
- one filter chain per available (mesh, service), matching ``transport_protocol: tls``
  and ``server_names: [<service>.<mesh>.mesh]``, with one ``tcp_proxy`` to the
  service's cluster; a default filter chain closes every other connection (no SNI, an
  unknown service, plaintext), so the listener is valid even with no service yet;
- for each port of a service (``proxy.envoy.ports``), the SNI ``<port>.<service>.<mesh>.mesh``
  that another zone sends for that port of a service with several ports: for a service
  with one port it is one more name of the service's chain (every instance serves the
  port); for a service with several, a chain and cluster of its own holding the
  instances that serve that port. Every port is answered either way, so a zone that
  knows the service with more ports (its own instances have others) still gets through;
- one EDS cluster per (mesh, service), named like its SNI, with no transport socket:
  the bytes go upstream as they came. Its ClusterLoadAssignment holds the service's
  local instances only (the sidecars' inbound ports), never other zones' ingresses, so
  traffic cannot bounce between zones. It is built by ``proxy.envoy.endpoints``, like a
  sidecar's, so it carries IP endpoints only (a hostname-addressed instance is left out).

There is no TLS context, no certificate and no SDS anywhere in here: the ingress holds
no workload key and cannot read the traffic it carries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.direct_response.v3 import config_pb2 as direct_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from proxy.context import Endpoint, Service, sni
from proxy.envoy import filters
from proxy.envoy.endpoints import Hosts, endpoints
from proxy.envoy.ports import at_port, local_ports
from proxy.envoy.protos import (
    ads,
    buffer_limit,
    duration,
    is_ip,
    listen_address,
    pack,
    socket_address,
    stat_prefix,
    u32,
)
from proxy.envoy.resources import Builder, ProxyResources

TCP_PROXY = "envoy.filters.network.tcp_proxy"
TLS_INSPECTOR = "envoy.filters.listener.tls_inspector"
DIRECT_RESPONSE = "envoy.filters.network.direct_response"
CONNECT_TIMEOUT = "5s"
# Envoy's default thresholds (1024 connections per cluster) would cap a zone's whole
# cross-zone traffic to one service; the sidecars behind the ingress apply the mesh's
# own limits (MeshCircuitBreaker) to what they accept.
MAX_CONNECTIONS = 1 << 20
NO_SERVICE_CHAIN = "no-service"


def listener_name(address: str, port: int) -> str:
    return f"ingress:{address}:{port}"


def cluster_name(service: str, mesh: str, port: int | None = None) -> str:
    """A (mesh, service) cluster and load assignment are named like the SNI they serve
    (that of one port, for one port of a service with several)."""
    return sni(service, mesh, port)


def routable(service: Service) -> tuple[Endpoint, ...]:
    """The instances an ingress can send to: IP-addressed ones (EDS carries IPs only)."""
    return tuple(e for e in service.endpoints if is_ip(e.address))


@dataclass(frozen=True)
class IngressContext:
    """One ingress's inputs: where it listens, and per mesh the services it offers with
    their local instances (``MeshState.services``; remote zones are ignored)."""

    name: str
    zone: str
    address: str
    port: int
    services: Mapping[str, Mapping[str, Service]]

    def targets(self) -> list[tuple[str, Service]]:
        """Every (mesh, service) with an instance to route to, in a stable order."""
        return [(mesh, svc) for mesh in sorted(self.services)
                for _, svc in sorted(self.services[mesh].items()) if routable(svc)]


def _thresholds() -> cluster_pb2.CircuitBreakers:
    limit = u32(MAX_CONNECTIONS)
    return circuit_breaker_pb2.CircuitBreakers(thresholds=[
        circuit_breaker_pb2.CircuitBreakers.Thresholds(
            priority=base_pb2.DEFAULT, max_connections=limit, max_pending_requests=limit,
            max_requests=limit)])


def passthrough_cluster(name: str) -> cluster_pb2.Cluster:
    """An EDS cluster with no transport socket: TLS from the client goes through as is."""
    cluster = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.EDS,
                                  connect_timeout=duration(CONNECT_TIMEOUT),
                                  circuit_breakers=_thresholds(),
                                  per_connection_buffer_limit_bytes=buffer_limit())
    cluster.eds_cluster_config.eds_config.CopyFrom(ads())
    cluster.eds_cluster_config.service_name = name
    return cluster


def _chain(server_names: list[str], cluster: str) -> lc_pb2.FilterChain:
    proxy = tcp_proxy_pb2.TcpProxy(stat_prefix=stat_prefix(cluster), cluster=cluster)
    return lc_pb2.FilterChain(
        name=server_names[0],
        filter_chain_match=lc_pb2.FilterChainMatch(transport_protocol="tls",
                                                   server_names=server_names),
        filters=[filters.network(TCP_PROXY, proxy)])


def _service_chains(mesh: str, service: Service, zone: str, out: Builder
                    ) -> list[lc_pb2.FilterChain]:
    """The chains of one (mesh, service), adding their clusters and load assignments."""
    # Local instances only: an ingress never forwards to another zone.
    local = replace(service, remote=(), endpoints=routable(service))
    ports = [p.port for p in local_ports(local.endpoints, service.protocol)]
    whole = [sni(service.name, mesh)]
    if len(ports) == 1:  # its one port is the whole service
        whole.append(sni(service.name, mesh, ports[0]))
    parts: list[tuple[list[str], int | None]] = [(whole, None)]
    if len(ports) > 1:
        parts += [([sni(service.name, mesh, p)], p) for p in ports]
    chains = []
    for server_names, port in parts:
        cluster = cluster_name(service.name, mesh, port)
        out.cluster(passthrough_cluster(cluster))
        out.load_assignment(endpoints(cluster, Hosts.of(at_port(local, port)), zone))
        chains.append(_chain(server_names, cluster))
    return chains


def _no_service_chain() -> lc_pb2.FilterChain:
    """Closes the connection at once: an empty direct response."""
    return lc_pb2.FilterChain(name=NO_SERVICE_CHAIN, filters=[
        filters.network(DIRECT_RESPONSE, direct_pb2.Config())])


def generate_ingress(ctx: IngressContext) -> ProxyResources:
    out = Builder()
    name = listener_name(ctx.address, ctx.port)
    listener = listener_pb2.Listener(
        name=name, address=socket_address(listen_address(ctx.address), ctx.port),
        traffic_direction=base_pb2.INBOUND, stat_prefix=stat_prefix(name),
        per_connection_buffer_limit_bytes=buffer_limit(),
        listener_filters=[lc_pb2.ListenerFilter(
            name=TLS_INSPECTOR, typed_config=pack(tls_inspector_pb2.TlsInspector()))],
        default_filter_chain=_no_service_chain())
    for mesh, service in ctx.targets():
        listener.filter_chains.extend(_service_chains(mesh, service, ctx.zone, out))
    out.listener(listener)
    return out.freeze()
