"""Clusters: a service's outbound cluster, an inbound's local application, collectors.

``outbound_cluster(destination, confs)`` depends only on its hashable arguments (the
mesh, the service, its protocol, the tag subset, the port for one port of a service
with several, and the merged ``to[]`` confs that shape a cluster), so the zone CP can
cache one message and share it across proxies. Its endpoints come by EDS over ADS under
the cluster's own name (``endpoints``); its transport socket is mTLS that verifies the
server's SPIFFE identity (``tls``), with the SNI naming the port when there is one
(``proxy.envoy.ports``);
HTTP/2 and gRPC destinations speak HTTP/2 upstream, HTTP ones HTTP/1.1, both through
``envoy.extensions.upstreams.http.v3.HttpProtocolOptions``.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2 as ec_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as upstream_http_pb2

from gossamer.model.meshcircuitbreaker import MeshCircuitBreakerConf
from gossamer.model.meshtimeout import MeshTimeoutConf
from gossamer.policy.selectors import TagSet
from proxy.context import sni
from proxy.envoy import circuit_breakers, health_checks, load_balancing, names, timeouts, tls
from proxy.envoy.confs import ClusterConfs
from proxy.envoy.protos import ads, buffer_limit, duration, is_ip, pack, socket_address

HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
HTTP2_PROTOCOLS = frozenset({"http2", "grpc"})
HTTP_PROTOCOLS = frozenset({"http", "http2", "grpc"})
COLLECTOR_CONNECT_TIMEOUT = "5s"


@dataclass(frozen=True)
class Destination:
    """An outbound cluster's identity: a service of a mesh (or a tagged subset of it, or
    one port of it)."""

    mesh: str
    service: str
    protocol: str = "tcp"
    subset: TagSet = ()
    port: int | None = None
    zone: str = ""

    @property
    def name(self) -> str:
        return names.cluster(self.service, self.subset, self.port, self.zone)


def _http_options(protocol: str, timeout: MeshTimeoutConf | None
                  ) -> upstream_http_pb2.HttpProtocolOptions:
    out = upstream_http_pb2.HttpProtocolOptions(
        common_http_protocol_options=timeouts.upstream_http_options(timeout))
    if protocol in HTTP2_PROTOCOLS:
        out.explicit_http_config.http2_protocol_options.SetInParent()
    else:
        out.explicit_http_config.http_protocol_options.SetInParent()
    return out


def outbound_cluster(destination: Destination, confs: ClusterConfs) -> cluster_pb2.Cluster:
    """The cluster of ``destination``, shaped by its merged ``to[]`` confs."""
    proto = destination.protocol
    cluster = cluster_pb2.Cluster(
        name=destination.name, type=cluster_pb2.Cluster.EDS,
        connect_timeout=timeouts.connect_timeout(confs.timeout),
        per_connection_buffer_limit_bytes=buffer_limit())
    cluster.eds_cluster_config.eds_config.CopyFrom(ads())
    cluster.eds_cluster_config.service_name = destination.name
    alpn = tls.H2_ALPN if proto in HTTP2_PROTOCOLS else ()
    upstream = tls.upstream_context(destination.service, destination.mesh, alpn)
    if destination.port is not None:
        upstream.sni = sni(destination.service, destination.mesh, destination.port)
    cluster.transport_socket.CopyFrom(tls.transport_socket(upstream))
    if proto in HTTP_PROTOCOLS:
        cluster.typed_extension_protocol_options[HTTP_OPTIONS].CopyFrom(
            pack(_http_options(proto, confs.timeout)))
    _apply_circuit_breaker(cluster, confs.circuit_breaker, outlier=True)
    health_checks.apply_to_cluster(cluster, confs.health_check, proto)
    load_balancing.apply_to_cluster(cluster, confs.load_balancing)
    return cluster


def _apply_circuit_breaker(cluster: cluster_pb2.Cluster, conf: MeshCircuitBreakerConf | None,
                           outlier: bool) -> None:
    if conf is None:
        return
    breakers = circuit_breakers.circuit_breakers(conf.connection_limits)
    if breakers is not None:
        cluster.circuit_breakers.CopyFrom(breakers)
    detection = circuit_breakers.outlier_detection(conf.outlier_detection) if outlier else None
    if detection is not None:
        cluster.outlier_detection.CopyFrom(detection)


def _static(name: str, host: str, port: int) -> cluster_pb2.Cluster:
    kind = cluster_pb2.Cluster.STATIC if is_ip(host) else cluster_pb2.Cluster.STRICT_DNS
    return cluster_pb2.Cluster(
        name=name, type=kind, per_connection_buffer_limit_bytes=buffer_limit(),
        load_assignment=endpoint_pb2.ClusterLoadAssignment(cluster_name=name, endpoints=[
            ec_pb2.LocalityLbEndpoints(lb_endpoints=[ec_pb2.LbEndpoint(
                endpoint=ec_pb2.Endpoint(address=socket_address(host, port)))])]))


def local_app_cluster(address: str, port: int, protocol: str, timeout: MeshTimeoutConf | None,
                      breaker: MeshCircuitBreakerConf | None) -> cluster_pb2.Cluster:
    """The application behind an inbound, in plaintext on ``address:port``; the inbound's
    timeouts and connection limits apply to it."""
    cluster = _static(names.local_app(port, address), address, port)
    cluster.connect_timeout.CopyFrom(timeouts.connect_timeout(timeout))
    if protocol in HTTP_PROTOCOLS:
        cluster.typed_extension_protocol_options[HTTP_OPTIONS].CopyFrom(
            pack(_http_options(protocol, timeout)))
    _apply_circuit_breaker(cluster, breaker, outlier=False)
    return cluster


def split_host_port(endpoint: str) -> tuple[str, int]:
    host, _, port = endpoint.rpartition(":")
    return host.strip("[]"), int(port)


def grpc_collector(endpoint: str) -> cluster_pb2.Cluster:
    """An OTLP/gRPC collector at ``host:port`` (plaintext HTTP/2)."""
    host, port = split_host_port(endpoint)
    cluster = _static(names.collector("otlp", host, port), host, port)
    cluster.connect_timeout.CopyFrom(duration(COLLECTOR_CONNECT_TIMEOUT))
    cluster.typed_extension_protocol_options[HTTP_OPTIONS].CopyFrom(
        pack(_http_options("grpc", None)))
    return cluster


def http_collector(kind: str, url: str) -> cluster_pb2.Cluster:
    """A collector reached by HTTP(S) at ``url``'s host; HTTPS sends SNI and does not
    verify the collector's certificate (no CA is configured for collectors)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    cluster = _static(names.collector(kind, host, port), host, port)
    cluster.connect_timeout.CopyFrom(duration(COLLECTOR_CONNECT_TIMEOUT))
    if parts.scheme == "https":
        cluster.transport_socket.CopyFrom(tls.transport_socket(
            tls_pb2.UpstreamTlsContext(sni=host)))
    return cluster

