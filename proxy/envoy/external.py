"""The cluster a sidecar reaches a MeshExternalService through, with TLS originated by it.

The outbound listener of an external service's VIP (``outbound.outbound_filter``) is
built like a service's: an HTTP connection manager routing by RDS
(``outbound:extsvc@<name>``, with its MeshHTTPRoute rules, which send to it alone) for
``http``, ``http2`` and ``grpc``, a ``tcp_proxy`` for ``tcp``, with the external
service's own ``to[]`` confs (MeshTimeout, MeshRetry, MeshCircuitBreaker,
MeshHealthCheck, MeshAccessLog, MeshFaultInjection, MeshLoadBalancingStrategy) and the
``Mesh``-wide ones. Only its cluster differs, built here:

- its endpoints are inline: ``STATIC`` when they are all IP addresses, else
  ``STRICT_DNS``, which Envoy re-resolves (every 5 s, its default) and spreads over
  every address a name has; IPv4 first, as a host's IPv6 route is
  often missing;
- no mesh mTLS: the far end is no sidecar. With ``tls.enabled`` the sidecar originates
  TLS itself (an ``UpstreamTlsContext``): SNI is ``serverName``, else the first host
  name among the endpoints; the chain is verified against the CA certificates of the
  spec (inline, or its mesh Secret), as inline bytes (public: a Secret referred to here
  must hold certificates, and only its certificates are copied); the name against
  ``subjectAltNames`` (Exact or Prefix, DNS names), else ``serverName``, else the host
  names, else the IP addresses (as IP SANs);
- TLS 1.2 to 1.3 unless ``version`` says otherwise (Envoy's own upstream default
  stops at 1.2);
- ``SkipSAN`` leaves the name out, ``SkipAll`` both (``SkipCA`` is refused when
  applied: Envoy cannot check a name over an unverified chain);
- a client certificate (``ExternalTls.client_cert_pem`` and its key) is presented only
  by the zone egress: the key is in the egress's context alone (``zone_cp.mesh_state``
  takes it out of the sidecars'), inline in its cluster, which Envoy redacts from its
  config dumps;
- through the zone egress (``ExternalService.via``, the Mesh's ``routing.zoneEgress``):
  the zone's egresses as its endpoints, reached over mesh mTLS (the workload's certificate; the
  egress must present ``egress_spiffe``) with SNI ``<name>.extsvc.<mesh>.mesh``; the
  egress checks MeshTrafficPermission and originates the TLS above (``zone_egress.envoy``),
  so the sidecar holds none of the external service's TLS settings;
- an external service whose CA cannot be read (``ExternalService.problem``) gets a
  cluster without endpoints: its callers get 503 (or a closed connection), never an
  unverified connection.

Pure: no I/O.
"""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2 as ec_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2

from gossamer.model.meshexternalservice import name_of_key
from proxy.context import (
    ExternalService,
    ExternalTls,
    OutboundListener,
    egress_spiffe,
    external_sni,
)
from proxy.envoy import health_checks, load_balancing, names, timeouts, tls
from proxy.envoy.clusters import HTTP2_PROTOCOLS, HTTP_OPTIONS, HTTP_PROTOCOLS

# Shared with the mesh's clusters, so an external one is shaped by its confs alike.
from proxy.envoy.clusters import _apply_circuit_breaker as apply_circuit_breaker
from proxy.envoy.clusters import _http_options as http_options
from proxy.envoy.confs import ClusterConfs
from proxy.envoy.protos import buffer_limit, is_ip, pack, socket_address

_TLS = common_pb2.TlsParameters
_VERSIONS = {"TLS12": _TLS.TLSv1_2, "TLS13": _TLS.TLSv1_3}
_SAN = common_pb2.SubjectAltNameMatcher
_VALIDATION = common_pb2.CertificateValidationContext


def external_cluster(ext: ExternalService, confs: ClusterConfs) -> cluster_pb2.Cluster:
    """The cluster of ``ext``, shaped by its merged ``to[]`` confs as a service's is
    (timeouts, circuit breakers and outlier detection, active health checks, load
    balancing)."""
    name = names.external_cluster(ext.name)
    hosts = () if ext.problem else ext.endpoints
    if ext.via and not ext.problem:
        hosts = tuple((via.address, via.port) for via in ext.via)
    static = all(is_ip(host) for host, _ in hosts)
    cluster = cluster_pb2.Cluster(
        name=name, type=cluster_pb2.Cluster.STATIC if static else cluster_pb2.Cluster.STRICT_DNS,
        connect_timeout=timeouts.connect_timeout(confs.timeout),
        per_connection_buffer_limit_bytes=buffer_limit(),
        load_assignment=endpoint_pb2.ClusterLoadAssignment(cluster_name=name, endpoints=[
            ec_pb2.LocalityLbEndpoints(lb_endpoints=[
                ec_pb2.LbEndpoint(endpoint=ec_pb2.Endpoint(address=socket_address(host, port)))
                for host, port in hosts])]))
    if not static:
        cluster.dns_lookup_family = cluster_pb2.Cluster.V4_PREFERRED
    if ext.protocol in HTTP_PROTOCOLS:
        cluster.typed_extension_protocol_options[HTTP_OPTIONS].CopyFrom(
            pack(http_options(ext.protocol, confs.timeout)))
    if ext.via:
        via = ext.via[0]  # one zone, one mesh: one identity for all of them
        cluster.transport_socket.CopyFrom(tls.transport_socket(tls.mesh_upstream(
            external_sni(ext.name, via.mesh), egress_spiffe(via.mesh, via.zone))))
    elif ext.tls is not None:
        alpn = tls.H2_ALPN if ext.protocol in HTTP2_PROTOCOLS else ()
        cluster.transport_socket.CopyFrom(tls.transport_socket(
            upstream_context(ext, ext.tls, alpn)))
    apply_circuit_breaker(cluster, confs.circuit_breaker, outlier=True)
    health_checks.apply_to_cluster(cluster, confs.health_check, ext.protocol)
    load_balancing.apply_to_cluster(cluster, confs.load_balancing)
    return cluster


def gone_external(outbound: OutboundListener) -> ExternalService:
    """What an external VIP sends to while its external service is gone (its VIP kept
    for the allocator's grace period) or no longer allowed here: nothing, so 503."""
    name = name_of_key(outbound.service) or outbound.service
    return ExternalService(name=name, port=outbound.port, problem="no longer defined here")


def server_name(ext: ExternalService, conf: ExternalTls) -> str:
    """The SNI: ``serverName``, else the first host name, else none ("")."""
    if conf.server_name:
        return conf.server_name
    return next((host for host, _ in ext.endpoints if not is_ip(host)), "")


def san_matchers(ext: ExternalService, conf: ExternalTls) -> list[common_pb2.SubjectAltNameMatcher]:
    """What the server's certificate must name (any one of them), per the module doc."""
    if conf.subject_alt_names:
        return [_SAN(san_type=_SAN.DNS, matcher=string_pb2.StringMatcher(
            exact=value) if kind == "Exact" else string_pb2.StringMatcher(prefix=value))
            for kind, value in conf.subject_alt_names]
    named = [conf.server_name] if conf.server_name else sorted(
        {host for host, _ in ext.endpoints if not is_ip(host)})
    if named:
        return [_SAN(san_type=_SAN.DNS, matcher=string_pb2.StringMatcher(exact=n))
                for n in named]
    return [_SAN(san_type=_SAN.IP_ADDRESS, matcher=string_pb2.StringMatcher(exact=ip))
            for ip in sorted({host for host, _ in ext.endpoints})]


def _validation(ext: ExternalService, conf: ExternalTls
                ) -> common_pb2.CertificateValidationContext | None:
    if conf.mode == "SkipAll":
        return None
    validation = _VALIDATION()
    if conf.ca_pem:
        validation.trusted_ca.inline_bytes = conf.ca_pem
    if conf.mode == "Secured":
        validation.match_typed_subject_alt_names.extend(san_matchers(ext, conf))
    return validation


def upstream_context(ext: ExternalService, conf: ExternalTls,
                     alpn: tuple[str, ...] = ()) -> tls_pb2.UpstreamTlsContext:
    """TLS originated to ``ext``: SNI, versions, and the validation its mode asks for."""
    common = tls_pb2.CommonTlsContext(alpn_protocols=list(alpn))
    if conf.min_version:
        common.tls_params.tls_minimum_protocol_version = _VERSIONS[conf.min_version]
    # Envoy's upstream default stops at TLS 1.2; an external service gets 1.3 unless
    # told otherwise.
    common.tls_params.tls_maximum_protocol_version = _VERSIONS[conf.max_version or "TLS13"]
    validation = _validation(ext, conf)
    if validation is not None:
        common.validation_context.CopyFrom(validation)
    if conf.client_cert_pem and conf.client_key_pem:  # the zone egress's context only
        common.tls_certificates.append(common_pb2.TlsCertificate(
            certificate_chain=base_pb2.DataSource(inline_bytes=conf.client_cert_pem),
            private_key=base_pb2.DataSource(inline_bytes=conf.client_key_pem)))
    return tls_pb2.UpstreamTlsContext(sni=server_name(ext, conf), common_tls_context=common)
