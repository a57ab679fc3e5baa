"""mTLS between sidecars: the TLS contexts of inbound listeners and outbound clusters.

Key material never appears in a generated resource: every context names SDS secrets
(``IDENTITY_SECRET``, the workload's certificate and key; ``TRUST_SECRET``, the mesh's
trust bundle) that the agent serves over gRPC on ``SDS_CLUSTER``, so a rotation reaches
Envoy without touching listeners or clusters.

Inbound contexts require a client certificate that chains to the trust bundle; which
identities may connect is RBAC's business (``rbac``). Outbound contexts send SNI
``<service>.<mesh>.mesh`` (the zone ingress routes on it) and accept only a server whose
certificate carries exactly ``spiffe://<mesh>/<service>``: a ``CombinedValidationContext``
adds that SAN match to the trust bundle from SDS.

Mesh mTLS, both ends of it, is TLS 1.3 and nothing else (``MESH_TLS_PARAMS``): under
TLS 1.2 both certificates travel in clear, and cross-zone traffic crosses the WAN with
the zone ingress only passing it through, so every workload's identity and tags would be
readable on the way. Both peers are our Envoys, so nothing older needs to be spoken.
A listener serving an operator's own certificate to a non-mesh client
(``provided_context``) keeps Envoy's TLS 1.2 minimum.
"""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2, config_source_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2

from proxy.context import IDENTITY_SECRET, SDS_CLUSTER, TRUST_SECRET, sni, spiffe
from proxy.envoy.protos import boolean, envoy_grpc, pack

TLS_SOCKET = "envoy.transport_sockets.tls"
H2_ALPN = ("h2",)
HTTP_ALPN = ("h2", "http/1.1")


def sds(name: str) -> secret_pb2.SdsSecretConfig:
    """The secret ``name`` from the agent's SDS server (gRPC over ``SDS_CLUSTER``)."""
    return secret_pb2.SdsSecretConfig(name=name, sds_config=config_source_pb2.ConfigSource(
        api_config_source=config_source_pb2.ApiConfigSource(
            api_type=config_source_pb2.ApiConfigSource.GRPC,
            transport_api_version=config_source_pb2.V3,
            grpc_services=[envoy_grpc(SDS_CLUSTER)]),
        resource_api_version=config_source_pb2.V3))


_TLS = common_pb2.TlsParameters
MESH_TLS_PARAMS = _TLS(tls_minimum_protocol_version=_TLS.TLSv1_3,
                       tls_maximum_protocol_version=_TLS.TLSv1_3)
PROVIDED_TLS_PARAMS = _TLS(tls_minimum_protocol_version=_TLS.TLSv1_2)


def downstream_context(alpn: tuple[str, ...] = ()) -> tls_pb2.DownstreamTlsContext:
    """What an inbound listener presents in mesh mTLS: the workload identity; it demands
    a client certificate signed by the mesh, over TLS 1.3."""
    common = tls_pb2.CommonTlsContext(
        tls_params=MESH_TLS_PARAMS, tls_certificate_sds_secret_configs=[sds(IDENTITY_SECRET)],
        validation_context_sds_secret_config=sds(TRUST_SECRET), alpn_protocols=list(alpn))
    return tls_pb2.DownstreamTlsContext(
        common_tls_context=common, require_client_certificate=boolean(True))


def provided_context(secret: str) -> tls_pb2.DownstreamTlsContext:
    """Server-only TLS with the certificate in SDS secret ``secret`` (an operator's, for
    clients outside the mesh): no client certificate asked, TLS 1.2 or later."""
    return tls_pb2.DownstreamTlsContext(
        common_tls_context=tls_pb2.CommonTlsContext(
            tls_params=PROVIDED_TLS_PARAMS, tls_certificate_sds_secret_configs=[sds(secret)]),
        require_client_certificate=boolean(False))


def upstream_context(service: str, mesh: str,
                     alpn: tuple[str, ...] = ()) -> tls_pb2.UpstreamTlsContext:
    """What an outbound cluster sends and accepts (see the module docstring)."""
    return mesh_upstream(sni(service, mesh), spiffe(mesh, service), alpn)


def mesh_upstream(server_name: str, peer: str,
                  alpn: tuple[str, ...] = ()) -> tls_pb2.UpstreamTlsContext:
    """Mesh mTLS sending SNI ``server_name`` to a peer whose certificate carries the URI
    ``peer``: another sidecar's service, or the zone egress (``egress_spiffe``)."""
    san = common_pb2.SubjectAltNameMatcher(
        san_type=common_pb2.SubjectAltNameMatcher.URI,
        matcher=string_pb2.StringMatcher(exact=peer))
    combined = tls_pb2.CommonTlsContext.CombinedCertificateValidationContext(
        default_validation_context=common_pb2.CertificateValidationContext(
            match_typed_subject_alt_names=[san]),
        validation_context_sds_secret_config=sds(TRUST_SECRET))
    return tls_pb2.UpstreamTlsContext(
        sni=server_name,
        common_tls_context=tls_pb2.CommonTlsContext(
            tls_params=MESH_TLS_PARAMS,
            tls_certificate_sds_secret_configs=[sds(IDENTITY_SECRET)],
            combined_validation_context=combined, alpn_protocols=list(alpn)))


def transport_socket(context: tls_pb2.DownstreamTlsContext | tls_pb2.UpstreamTlsContext
                     ) -> base_pb2.TransportSocket:
    return base_pb2.TransportSocket(name=TLS_SOCKET, typed_config=pack(context))
