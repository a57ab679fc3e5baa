"""The zone egress's Envoy resources: mesh mTLS in, external services out, pure.

``generate_egress(EgressContext) -> ProxyResources``. The sidecars of a zone whose Mesh
routes through the egress (``routing.zoneEgress``) open mesh mTLS to it with SNI
``<name>.extsvc.<mesh>.mesh`` (``proxy.context.external_sni``) for the
MeshExternalService ``name``, presenting their workload certificate. So:

- one listener, ``egress:<address>:<port>``, with the TLS inspector;
- per (mesh the egress serves, external service): a filter chain matching that SNI
  that **terminates** the mesh mTLS with the egress's own identity in the mesh
  (``egress_spiffe``, SDS secrets ``identity:<mesh>`` and ``trust_bundle:<mesh>`` that
  the egress agent serves; it has a key of its own and none of a workload's), requiring
  a client certificate chained to the mesh's trust bundle; then an RBAC network filter
  with the MeshTrafficPermissions for the external service by the caller's verified
  identity (``permission_rules``), then a ``tcp_proxy`` to the external service's
  cluster, which originates TLS when the MeshExternalService says so
  (``proxy.envoy.external``: the egress holds the external service's CA, public only);
- per (mesh, service of another zone) when the Mesh also routes cross-zone traffic
  through it: a chain matching the service's SNI (``<service>.<mesh>.mesh``) that is
  **not** terminated: a ``tcp_proxy`` passes the sidecar's mTLS through to that zone's
  ingresses, so the two sidecars' mTLS stays end to end (``remote_chains``);
- a default chain that closes anything else (no SNI, an unknown name, plaintext).

Who may call: the ``from[]`` items of the MeshTrafficPermissions of the mesh whose
top-level targetRef is ``Mesh`` (as for any inbound: a mesh opened with a ``Mesh``-wide
Allow stays open) or ``MeshExternalService`` naming the service, first-match like an
inbound's (``gossamer.policy.sources``); none means no one, as for an inbound.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2 as ec_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.direct_response.v3 import config_pb2 as direct_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from gossamer.model.base import Resource
from gossamer.model.meshtrafficpermission import MeshTrafficPermissionConf
from gossamer.model.policy import SPECIFICITY, TargetKind
from gossamer.policy.merge import PolicyRef
from gossamer.policy.selectors import applies_in_zone, policy_order, source_tags, top_target_ref
from gossamer.policy.sources import FromItem, build_from_rules
from proxy.context import RemoteZone, Service, external_sni, sni
from proxy.envoy import filters, rbac, tls
from proxy.envoy.confs import ClusterConfs
from proxy.envoy.external import external_cluster
from proxy.envoy.protos import (
    boolean,
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
from proxy.names import egress_identity_secret, egress_trust_secret

TCP_PROXY = "envoy.filters.network.tcp_proxy"
TLS_INSPECTOR = "envoy.filters.listener.tls_inspector"
DIRECT_RESPONSE = "envoy.filters.network.direct_response"
PERMISSION_KIND = "MeshTrafficPermission"
NO_DESTINATION_CHAIN = "no-destination"
CONNECT_TIMEOUT = "5s"


def listener_name(address: str, port: int) -> str:
    return f"egress:{address}:{port}"


def external_cluster_name(name: str, mesh: str) -> str:
    """The cluster of an external service at the egress: named like its SNI, so two
    meshes' external services of one name stay apart."""
    return external_sni(name, mesh)


def remote_cluster_name(service: str, mesh: str) -> str:
    return f"remote:{sni(service, mesh)}"


@dataclass(frozen=True)
class EgressMesh:
    """What the egress does for one mesh: its external services (``Service`` with
    ``external``), its MeshTrafficPermissions, and when the Mesh routes cross-zone traffic
    through the egress, the services other zones serve (``Service.remote``)."""

    external: Sequence[Service] = ()
    permissions: Sequence[Resource] = ()
    remote: Sequence[Service] = ()


@dataclass(frozen=True)
class EgressContext:
    name: str
    zone: str
    address: str
    port: int
    meshes: Mapping[str, EgressMesh] = field(default_factory=dict)


def permission_rules(
    policies: Iterable[Resource], mesh: str, name: str, zone: str
) -> tuple[rbac.SourceRule, ...]:
    """Who may call the external service ``name`` of ``mesh`` (module docstring)."""
    selected = []
    for policy in policies:
        ref = top_target_ref(policy)
        if (
            policy.type != PERMISSION_KIND
            or policy.mesh != mesh
            or ref is None
            or (ref.mesh and ref.mesh != mesh)
            or not applies_in_zone(policy, zone)
        ):
            continue
        if ref.kind is TargetKind.MESH or (
            ref.kind is TargetKind.MESH_EXTERNAL_SERVICE and ref.name == name
        ):
            selected.append(policy)
    items = []
    for index, policy in enumerate(sorted(selected, key=policy_order)):
        for i, item in enumerate(getattr(policy.spec, "from_", None) or ()):
            tags = source_tags(item.target_ref, mesh)
            if tags is not None and isinstance(item.default, MeshTrafficPermissionConf):
                order = (SPECIFICITY[item.target_ref.kind], index, i)
                items.append(
                    FromItem(tags, order, PolicyRef(PERMISSION_KIND, policy.name), item.default)
                )
    out = []
    for rule in build_from_rules(items):
        conf = rule.conf.conf
        if isinstance(conf, MeshTrafficPermissionConf):
            names = ",".join(p.name for p in rule.conf.policies)
            out.append(rbac.SourceRule(rule.source.tags, conf.action, names))
    return tuple(out)


def _terminating_context(mesh: str) -> tls_pb2.DownstreamTlsContext:
    """Mesh mTLS as a sidecar's inbound has it, with the egress's identity in ``mesh``."""
    common = tls_pb2.CommonTlsContext(
        tls_params=tls.MESH_TLS_PARAMS,
        tls_certificate_sds_secret_configs=[tls.sds(egress_identity_secret(mesh))],
        validation_context_sds_secret_config=tls.sds(egress_trust_secret(mesh)),
    )
    return tls_pb2.DownstreamTlsContext(
        common_tls_context=common, require_client_certificate=boolean(True)
    )


def _tcp_proxy(cluster: str) -> lc_pb2.Filter:
    return filters.network(
        TCP_PROXY, tcp_proxy_pb2.TcpProxy(stat_prefix=stat_prefix(cluster), cluster=cluster)
    )


def _external_chain(
    mesh: str, svc: Service, rules: Sequence[rbac.SourceRule], out: Builder
) -> lc_pb2.FilterChain | None:
    ext = svc.external
    if ext is None:
        return None
    name = external_cluster_name(ext.name, mesh)
    cluster = external_cluster(ext, ClusterConfs())
    cluster.name = name
    cluster.load_assignment.cluster_name = name
    # The sidecar speaks the service's protocol inside the mTLS; the egress relays bytes.
    cluster.ClearField("typed_extension_protocol_options")
    out.cluster(cluster)
    perms = rbac.permissions(mesh, rules)
    return lc_pb2.FilterChain(
        name=name,
        filter_chain_match=lc_pb2.FilterChainMatch(transport_protocol="tls", server_names=[name]),
        transport_socket=tls.transport_socket(_terminating_context(mesh)),
        filters=[
            filters.network(rbac.NETWORK_FILTER, rbac.network_filter(perms, stat_prefix(name))),
            _tcp_proxy(name),
        ],
    )


def _remote_endpoints(name: str, zones: Sequence[RemoteZone]) -> endpoint_pb2.ClusterLoadAssignment:
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=name,
        endpoints=[
            ec_pb2.LocalityLbEndpoints(
                lb_endpoints=[
                    ec_pb2.LbEndpoint(
                        endpoint=ec_pb2.Endpoint(address=socket_address(z.address, z.port)),
                        load_balancing_weight=u32(max(z.instances, 1)),
                    )
                    for z in zones
                ]
            )
        ],
    )


def _remote_chain(mesh: str, svc: Service, out: Builder) -> lc_pb2.FilterChain | None:
    """Cross-zone: the sidecar's mTLS to ``svc`` passed through to the other zones'
    ingresses by its SNI, never terminated here."""
    if not svc.remote:
        return None
    name = remote_cluster_name(svc.name, mesh)
    static = all(is_ip(z.address) for z in svc.remote)
    cluster = cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.STATIC if static else cluster_pb2.Cluster.STRICT_DNS,
        connect_timeout=duration(CONNECT_TIMEOUT),
        per_connection_buffer_limit_bytes=buffer_limit(),
        load_assignment=_remote_endpoints(name, svc.remote),
    )
    out.cluster(cluster)
    names = [sni(svc.name, mesh)]
    names += sorted({sni(svc.name, mesh, p.port) for z in svc.remote for p in z.ports})
    return lc_pb2.FilterChain(
        name=name,
        filter_chain_match=lc_pb2.FilterChainMatch(transport_protocol="tls", server_names=names),
        filters=[_tcp_proxy(name)],
    )


def _closing_chain() -> lc_pb2.FilterChain:
    return lc_pb2.FilterChain(
        name=NO_DESTINATION_CHAIN, filters=[filters.network(DIRECT_RESPONSE, direct_pb2.Config())]
    )


def generate_egress(ctx: EgressContext) -> ProxyResources:
    out = Builder()
    name = listener_name(ctx.address, ctx.port)
    listener = listener_pb2.Listener(
        name=name,
        address=socket_address(listen_address(ctx.address), ctx.port),
        traffic_direction=base_pb2.OUTBOUND,
        stat_prefix=stat_prefix(name),
        per_connection_buffer_limit_bytes=buffer_limit(),
        listener_filters=[
            lc_pb2.ListenerFilter(
                name=TLS_INSPECTOR, typed_config=pack(tls_inspector_pb2.TlsInspector())
            )
        ],
        default_filter_chain=_closing_chain(),
    )
    for mesh in sorted(ctx.meshes):
        conf = ctx.meshes[mesh]
        for svc in sorted(conf.external, key=lambda s: s.name):
            ext = svc.external
            rules = (
                permission_rules(conf.permissions, mesh, ext.name, ctx.zone)
                if ext is not None
                else ()
            )
            chain = _external_chain(mesh, svc, rules, out)
            if chain is not None:
                listener.filter_chains.append(chain)
        for svc in sorted(conf.remote, key=lambda s: s.name):
            chain = _remote_chain(mesh, svc, out)
            if chain is not None:
                listener.filter_chains.append(chain)
    out.listener(listener)
    return out.freeze()
