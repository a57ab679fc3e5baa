"""The zone egress's Envoy resources (``zone_egress.envoy``), a sidecar's cluster to it
(``proxy.envoy.external``) and the routing through it (``zone_cp.mesh_state``), pure."""

from __future__ import annotations

import dataclasses
from typing import Any

from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from gossamer.model.base import Resource
from gossamer.model.labels import ORIGIN_LABEL, ORIGIN_ZONE, ZONE_LABEL
from gossamer.model.meshtrafficpermission import Action
from gossamer.model.registry import parse_document
from proxy.context import Egress, RemoteZone, Service, egress_spiffe, external_sni
from proxy.envoy.confs import ClusterConfs
from proxy.envoy.external import external_cluster
from tests.unit.envoy_external_inputs import PG_SERVICE, httpbin
from zone_cp.mesh_state import through_egress
from zone_egress.envoy import EgressContext, EgressMesh, generate_egress, permission_rules

WEB = (("gossamer.io/service", "web"),)
EGRESS = (Egress("10.0.0.9", 10002, "west", "default"),)
BACKEND = Service("backend", "http", remote=(RemoteZone("east", "192.0.2.1", 10001, 2),))


def mtp(
    name: str,
    target: dict[str, Any],
    source: dict[str, Any],
    action: str,
    labels: dict[str, str] | None = None,
) -> Resource:
    return parse_document(
        {
            "type": "MeshTrafficPermission",
            "mesh": "default",
            "name": name,
            "labels": labels or {},
            "spec": {
                "targetRef": target,
                "from": [{"targetRef": source, "default": {"action": action}}],
            },
        }
    )


ALLOW_ALL = mtp("allow-all", {"kind": "Mesh"}, {"kind": "Mesh"}, "Allow")
DENY_WEB = mtp(
    "no-web",
    {"kind": "MeshExternalService", "name": "httpbin"},
    {"kind": "MeshService", "name": "web"},
    "Deny",
)


def test_who_may_call_an_external_service_is_first_match_by_caller() -> None:
    rules = permission_rules([ALLOW_ALL, DENY_WEB], "default", "httpbin", "west")
    assert [(r.tags, r.action) for r in rules] == [(WEB, Action.DENY), ((), Action.ALLOW)]
    # A Deny aimed at another external service, or a zone-origin policy of another zone,
    # says nothing about httpbin here.
    other = permission_rules([ALLOW_ALL, DENY_WEB], "default", "pg", "west")
    assert [(r.tags, r.action) for r in other] == [((), Action.ALLOW)]
    east = dataclasses.replace(DENY_WEB, labels={ORIGIN_LABEL: ORIGIN_ZONE, ZONE_LABEL: "east"})
    assert [
        r.action for r in permission_rules([ALLOW_ALL, east], "default", "httpbin", "west")
    ] == [Action.ALLOW]
    assert permission_rules([], "default", "httpbin", "west") == ()  # closed by default


def _chain(resources: Any, name: str) -> Any:
    (listener,) = resources.listeners.values()
    return next(c for c in listener.filter_chains if c.name == name)


def test_the_egress_terminates_mesh_mtls_per_external_service_and_originates_tls() -> None:
    ctx = EgressContext(
        "west-egress",
        "west",
        "0.0.0.0",
        10002,
        {
            "default": EgressMesh(
                external=(httpbin(), PG_SERVICE),
                permissions=(ALLOW_ALL, DENY_WEB),
                remote=(BACKEND,),
            )
        },
    )
    out = generate_egress(ctx)
    sni = external_sni("httpbin", "default")
    chain = _chain(out, sni)
    assert list(chain.filter_chain_match.server_names) == [sni]
    downstream = tls_pb2.DownstreamTlsContext()
    chain.transport_socket.typed_config.Unpack(downstream)
    assert downstream.require_client_certificate.value
    common = downstream.common_tls_context
    assert [s.name for s in common.tls_certificate_sds_secret_configs] == ["identity:default"]
    assert common.validation_context_sds_secret_config.name == "trust_bundle:default"
    rbac, proxy = network_rbac_pb2.RBAC(), tcp_proxy_pb2.TcpProxy()
    chain.filters[0].typed_config.Unpack(rbac)
    chain.filters[1].typed_config.Unpack(proxy)
    assert len(rbac.rules.policies) == 1  # allow, except web (its Deny comes first)
    assert proxy.cluster == sni
    upstream = tls_pb2.UpstreamTlsContext()
    out.clusters[sni].transport_socket.typed_config.Unpack(upstream)
    assert upstream.sni == "httpbin.example.com"  # TLS to the outside, from here
    assert not out.clusters[external_sni("pg", "default")].HasField("transport_socket")
    # Cross-zone: passed through by SNI to east's ingress, never terminated here.
    remote = _chain(out, "remote:backend.default.mesh")
    assert list(remote.filter_chain_match.server_names) == ["backend.default.mesh"]
    assert not remote.HasField("transport_socket")


def test_a_sidecar_reaches_an_external_service_through_the_egress_over_mesh_mtls() -> None:
    svc = httpbin()
    assert svc.external is not None
    cluster = external_cluster(dataclasses.replace(svc.external, via=EGRESS), ClusterConfs())
    (hosts,) = cluster.load_assignment.endpoints
    assert [
        (e.endpoint.address.socket_address.address, e.endpoint.address.socket_address.port_value)
        for e in hosts.lb_endpoints
    ] == [("10.0.0.9", 10002)]
    upstream = tls_pb2.UpstreamTlsContext()
    cluster.transport_socket.typed_config.Unpack(upstream)
    assert upstream.sni == external_sni("httpbin", "default")
    common = upstream.common_tls_context
    assert [s.name for s in common.tls_certificate_sds_secret_configs] == ["identity"]
    sans = common.combined_validation_context.default_validation_context
    assert [m.matcher.exact for m in sans.match_typed_subject_alt_names] == [
        egress_spiffe("default", "west")
    ]


def test_routing_through_the_egress_never_goes_around_it() -> None:
    services = {"extsvc@httpbin": httpbin(), "backend": BACKEND}
    routed = through_egress(services, EGRESS, "west", external=True, cross_zone=True)
    assert routed["extsvc@httpbin"].external.via == EGRESS  # type: ignore[union-attr]
    assert [(r.zone, r.address, r.port) for r in routed["backend"].remote] == [
        ("east", "10.0.0.9", 10002)
    ]
    none = through_egress(services, (), "west", external=True, cross_zone=True)
    assert "has none" in none["extsvc@httpbin"].external.problem  # type: ignore[union-attr]
    assert none["backend"].remote == ()
    only_external = through_egress(services, EGRESS, "west", external=True, cross_zone=False)
    assert only_external["backend"] == BACKEND
