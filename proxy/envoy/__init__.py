"""Envoy resource generation: ``ProxyContext`` in, Envoy listeners, clusters, load
assignments and route configurations out. Pure code (no I/O); protobuf messages appear
here because Envoy resources are protobufs: this is the edge where domain types become
wire types.

Entry point ``generate(ctx, cache=None) -> ProxyResources``; ``ProxyResources.items()``
yields ``(type_url, name, message)``. It is ``combine(generate_shape(ctx, cache),
generate_own(ctx))``: the shape may be shared by every proxy with the same
``shape_key(ctx)`` (see ``shapes`` for what the caller must hold equal besides).
Per-service pieces are separately callable with hashable inputs, for caching across
proxies: ``outbound_cluster(Destination, ClusterConfs)`` and ``endpoints(cluster_name,
Hosts, zone, Locality)``; ``backend_pieces(ctx, Backend, cache)`` derives those inputs
from a context and returns both. Pass one ``PieceCache`` (per zone CP) to every
``generate`` to share them. Names of every resource: see ``names``.

Modules: ``generate`` (assembly, in two parts), ``shapes`` (which proxies share a
shape), ``inbound``, ``outbound``, ``clusters``, ``endpoints``, ``routes``
(MeshHTTPRoute, MeshTCPRoute), ``http`` (the connection manager), ``tls``, ``rbac``
(MeshTrafficPermission), one module per policy family (``timeouts``, ``retries``,
``circuit_breakers``, ``health_checks``, ``load_balancing``, ``rate_limits``,
``faults``, ``access_logs``, ``tracing``, ``metrics``), ``names`` (how every resource is
named), ``confs`` (reading ``ProxyPolicies``), ``cache``, ``resources``, ``protos`` and
``headers``/``filters`` (small message builders).
"""

from proxy.envoy.cache import PieceCache
from proxy.envoy.clusters import Destination, outbound_cluster
from proxy.envoy.confs import ClusterConfs
from proxy.envoy.endpoints import Host, Hosts, endpoints
from proxy.envoy.generate import combine, generate, generate_own, generate_shape
from proxy.envoy.load_balancing import Locality
from proxy.envoy.outbound import backend_pieces
from proxy.envoy.resources import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    TYPE_ORDER,
    ProxyResources,
)
from proxy.envoy.routes import Backend
from proxy.envoy.shapes import ShapeKey, shape_key

__all__ = [
    "CLUSTER_TYPE",
    "ENDPOINT_TYPE",
    "LISTENER_TYPE",
    "ROUTE_TYPE",
    "TYPE_ORDER",
    "Backend",
    "ClusterConfs",
    "Destination",
    "Host",
    "Hosts",
    "Locality",
    "PieceCache",
    "ProxyResources",
    "ShapeKey",
    "backend_pieces",
    "combine",
    "endpoints",
    "generate",
    "generate_own",
    "generate_shape",
    "outbound_cluster",
    "shape_key",
]
