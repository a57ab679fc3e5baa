"""MeshExternalService generation (``proxy.envoy.external``): the VIP listener routes to
the ``extsvc@<name>`` cluster (HTTP connection manager or tcp_proxy), the cluster holds
the endpoints inline (STRICT_DNS for host names, STATIC for IPs) and originates TLS per
the verification mode, policies aimed at the external service apply to it, and a CA that
could not be read leaves the cluster without endpoints."""

from __future__ import annotations

import dataclasses

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2

from proxy.context import ExternalTls
from proxy.envoy import ProxyResources, generate
from proxy.envoy import transparent as tp
from tests.unit.envoy_external_inputs import (
    ACCESS_LOG,
    CA_PEM,
    CIRCUIT_BREAKER,
    FAULT,
    HEALTH_CHECK,
    HTTPBIN,
    LOAD_BALANCING,
    PG,
    RETRY,
    ROUTE,
    TIMEOUT,
    external_ctx,
    httpbin,
)
from tests.unit.test_envoy_transparent import WEB_TRANSPARENT, chains_by_name

_V = common_pb2.CertificateValidationContext


def tls_of(cluster: cluster_pb2.Cluster) -> tls_pb2.UpstreamTlsContext:
    context = tls_pb2.UpstreamTlsContext()
    assert cluster.transport_socket.typed_config.Unpack(context)
    return context


def hcm_of(listener: listener_pb2.Listener) -> hcm_pb2.HttpConnectionManager:
    hcm = hcm_pb2.HttpConnectionManager()
    assert listener.filter_chains[0].filters[0].typed_config.Unpack(hcm)
    return hcm


def tcp_of(listener: listener_pb2.Listener) -> tcp_proxy_pb2.TcpProxy:
    proxy = tcp_proxy_pb2.TcpProxy()
    assert listener.filter_chains[0].filters[0].typed_config.Unpack(proxy)
    return proxy


def sans(cluster: cluster_pb2.Cluster) -> list[tuple[int, str]]:
    validation = tls_of(cluster).common_tls_context.validation_context
    return [(m.san_type, m.matcher.exact or "prefix:" + m.matcher.prefix)
            for m in validation.match_typed_subject_alt_names]


def res(*policies: str, **kwargs: object) -> ProxyResources:
    return generate(external_ctx(*policies, **kwargs))  # type: ignore[arg-type]


def test_an_http_external_service_routes_to_its_cluster_over_originated_tls() -> None:
    out = res()
    listener = out.listeners["outbound:240.0.0.1:80"]
    route_name = hcm_of(listener).rds.route_config_name
    assert route_name == f"outbound:{HTTPBIN}"
    route = out.routes[route_name].virtual_hosts[0].routes[-1]
    assert route.route.cluster == HTTPBIN
    cluster = out.clusters[HTTPBIN]
    assert cluster.type == cluster_pb2.Cluster.STRICT_DNS
    assert cluster.dns_lookup_family == cluster_pb2.Cluster.V4_PREFERRED
    hosts = [(e.endpoint.address.socket_address.address,
              e.endpoint.address.socket_address.port_value)
             for e in cluster.load_assignment.endpoints[0].lb_endpoints]
    assert hosts == [("httpbin.example.com", 443), ("httpbin-2.example.com", 443)]
    assert HTTPBIN not in out.endpoints  # inline, no EDS
    context = tls_of(cluster)
    assert context.sni == "httpbin.example.com"  # the first host name
    validation = context.common_tls_context.validation_context
    assert validation.trusted_ca.inline_bytes == CA_PEM
    assert validation.trust_chain_verification == _V.VERIFY_TRUST_CHAIN
    assert sans(cluster) == [(common_pb2.SubjectAltNameMatcher.DNS, "httpbin-2.example.com"),
                             (common_pb2.SubjectAltNameMatcher.DNS, "httpbin.example.com")]
    # no mesh identity: the far end is no sidecar
    assert not context.common_tls_context.tls_certificate_sds_secret_configs


def test_a_tcp_external_service_by_ip_is_a_static_cluster_in_plaintext() -> None:
    out = res()
    assert tcp_of(out.listeners["outbound:240.0.0.2:5432"]).cluster == PG
    cluster = out.clusters[PG]
    assert cluster.type == cluster_pb2.Cluster.STATIC
    assert not cluster.HasField("transport_socket")
    assert len(cluster.load_assignment.endpoints[0].lb_endpoints) == 2


def test_timeouts_and_retries_aimed_at_it_apply_to_it_alone() -> None:
    out = res(TIMEOUT, RETRY)
    cluster = out.clusters[HTTPBIN]
    assert cluster.connect_timeout.seconds == 3
    route = out.routes[f"outbound:{HTTPBIN}"].virtual_hosts[0].routes[-1].route
    assert route.timeout.ToMilliseconds() == 1500
    assert route.retry_policy.num_retries.value == 4
    assert tcp_of(out.listeners["outbound:240.0.0.2:5432"]).max_connect_attempts.value == 3
    backend = out.routes["outbound:backend"].virtual_hosts[0].routes[-1].route
    assert not backend.HasField("timeout") or backend.timeout.ToMilliseconds() != 1500
    assert backend.retry_policy.num_retries.value != 4
    assert out.clusters["backend"].connect_timeout.seconds != 3


def test_circuit_breakers_health_checks_and_access_logs_aimed_at_it_apply() -> None:
    out = res(CIRCUIT_BREAKER, HEALTH_CHECK, ACCESS_LOG)
    cluster = out.clusters[HTTPBIN]
    assert cluster.circuit_breakers.thresholds[0].max_connections.value == 7
    assert cluster.outlier_detection.interval.seconds == 5
    assert [c.http_health_check.path for c in cluster.health_checks] == ["/health"]
    assert len(tcp_of(out.listeners["outbound:240.0.0.2:5432"]).access_log) == 1
    assert not hcm_of(out.listeners["outbound:240.0.0.1:80"]).access_log  # pg's only
    assert not out.clusters[PG].health_checks
    assert not out.clusters["backend"].HasField("circuit_breakers")


def test_routes_faults_and_load_balancing_aimed_at_it_apply_to_it_alone() -> None:
    out = res(ROUTE, FAULT, LOAD_BALANCING)
    routes = out.routes[f"outbound:{HTTPBIN}"].virtual_hosts[0].routes
    redirect, rewrite, catch_all = routes  # exact path first, then the prefix
    assert redirect.match.path == "/old" and redirect.redirect.path_redirect == "/new"
    assert rewrite.match.path_separated_prefix == "/v1"
    assert [(h.header.key, h.header.value) for h in rewrite.request_headers_to_add] == [
        ("x-api-version", "1")]
    assert rewrite.route.cluster == HTTPBIN and catch_all.route.cluster == HTTPBIN
    assert rewrite.route.regex_rewrite.substitution or rewrite.route.prefix_rewrite
    names = [f.name for f in hcm_of(out.listeners["outbound:240.0.0.1:80"]).http_filters]
    assert any(n.startswith("envoy.filters.http.fault") for n in names)
    assert out.clusters[HTTPBIN].lb_policy == cluster_pb2.Cluster.LEAST_REQUEST
    # The mesh's own destinations are untouched.
    backend = out.routes["outbound:backend"].virtual_hosts[0].routes
    assert len(backend) == 1 and backend[0].route.cluster == "backend"
    assert out.clusters["backend"].lb_policy != cluster_pb2.Cluster.LEAST_REQUEST
    backend_hcms = [hcm_of(listener) for name, listener in out.listeners.items()
                    if name.startswith("outbound:") and name != "outbound:240.0.0.1:80"
                    and listener.filter_chains[0].filters[0].name
                    == "envoy.filters.network.http_connection_manager"]
    assert backend_hcms and not any(f.name.startswith("envoy.filters.http.fault")
                                    for h in backend_hcms for f in h.http_filters)


def test_verification_modes() -> None:
    def cluster(conf: ExternalTls) -> cluster_pb2.Cluster:
        return res(service=httpbin(conf)).clusters[HTTPBIN]

    named = cluster(ExternalTls(ca_pem=CA_PEM, server_name="api.example.com",
                                subject_alt_names=(("Exact", "a.example.com"),
                                                   ("Prefix", "b."))))
    assert tls_of(named).sni == "api.example.com"
    assert sans(named) == [(common_pb2.SubjectAltNameMatcher.DNS, "a.example.com"),
                           (common_pb2.SubjectAltNameMatcher.DNS, "prefix:b.")]
    skip_san = tls_of(cluster(ExternalTls(mode="SkipSAN", ca_pem=CA_PEM)))
    assert skip_san.common_tls_context.validation_context.trusted_ca.inline_bytes == CA_PEM
    assert not skip_san.common_tls_context.validation_context.match_typed_subject_alt_names
    skip_all = tls_of(cluster(ExternalTls(mode="SkipAll")))
    assert not skip_all.common_tls_context.HasField("validation_context")
    assert skip_all.common_tls_context.tls_params.tls_maximum_protocol_version == \
        common_pb2.TlsParameters.TLSv1_3  # not Envoy's upstream default, 1.2
    versions = tls_of(cluster(ExternalTls(mode="SkipAll", min_version="TLS12",
                                          max_version="TLS13"))).common_tls_context.tls_params
    assert (versions.tls_minimum_protocol_version, versions.tls_maximum_protocol_version) == (
        common_pb2.TlsParameters.TLSv1_2, common_pb2.TlsParameters.TLSv1_3)
    h2 = res(service=httpbin(protocol="grpc")).clusters[HTTPBIN]
    assert list(tls_of(h2).common_tls_context.alpn_protocols) == ["h2"]


def test_an_unreadable_ca_leaves_no_endpoint_rather_than_an_unverified_connection() -> None:
    cluster = res(service=httpbin(ExternalTls(), problem="its caCert Secret 'x' does not "
                                                          "exist")).clusters[HTTPBIN]
    assert not cluster.load_assignment.endpoints[0].lb_endpoints


def test_a_gone_external_service_keeps_its_vip_listener_with_nowhere_to_send() -> None:
    ctx = external_ctx()
    services = {k: v for k, v in ctx.services.items() if k != HTTPBIN}
    out = generate(dataclasses.replace(ctx, services=services))
    assert "outbound:240.0.0.1:80" in out.listeners
    cluster = out.clusters[HTTPBIN]
    assert cluster.type == cluster_pb2.Cluster.STATIC
    assert not cluster.load_assignment.endpoints[0].lb_endpoints
    assert not cluster.HasField("transport_socket")  # never a mesh mTLS cluster
    assert HTTPBIN not in out.endpoints


def test_a_transparent_proxy_captures_the_vip_with_the_same_filter() -> None:
    out = res(dataplane=WEB_TRANSPARENT)
    chains = chains_by_name(out.listeners[tp.OUTBOUND_LISTENER])
    chain = chains[f"{HTTPBIN}:240.0.0.1:80"]
    hcm = hcm_pb2.HttpConnectionManager()
    assert chain.filters[0].typed_config.Unpack(hcm)
    assert hcm.rds.route_config_name == f"outbound:{HTTPBIN}"
    assert f"{PG}:240.0.0.2:5432" in chains
    assert "outbound:240.0.0.1:80" not in out.listeners  # captured: no listener of its own
