"""``ProxyResources``: one proxy's generated Envoy resources, by xDS type and name."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from google.protobuf.message import Message

LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"
CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT_TYPE = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
ROUTE_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
# The order Envoy wants them in: clusters (and their endpoints) before the listeners and
# routes that name them.
TYPE_ORDER = (CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE)


def _frozen() -> Mapping[str, Message]:
    return MappingProxyType({})


@dataclass(frozen=True)
class ProxyResources:
    """Listeners, clusters, load assignments and route configurations, each by name.

    Messages may be shared with other proxies, through ``PieceCache`` or a shape shared
    by a class of proxies (``generate.combine``): never mutate one.
    """

    listeners: Mapping[str, listener_pb2.Listener] = field(default_factory=_frozen)
    clusters: Mapping[str, cluster_pb2.Cluster] = field(default_factory=_frozen)
    endpoints: Mapping[str, endpoint_pb2.ClusterLoadAssignment] = field(default_factory=_frozen)
    routes: Mapping[str, route_pb2.RouteConfiguration] = field(default_factory=_frozen)

    def by_type(self) -> dict[str, Mapping[str, Message]]:
        return {CLUSTER_TYPE: self.clusters, ENDPOINT_TYPE: self.endpoints,
                LISTENER_TYPE: self.listeners, ROUTE_TYPE: self.routes}

    def items(self) -> Iterator[tuple[str, str, Message]]:
        """Every resource as ``(type_url, name, message)``, in ``TYPE_ORDER`` then by name."""
        for type_url, resources in self.by_type().items():
            for name in sorted(resources):
                yield type_url, name, resources[name]


@dataclass
class Builder:
    """The mutable accumulator ``generate`` fills and then freezes."""

    listeners: dict[str, listener_pb2.Listener] = field(default_factory=dict)
    clusters: dict[str, cluster_pb2.Cluster] = field(default_factory=dict)
    endpoints: dict[str, endpoint_pb2.ClusterLoadAssignment] = field(default_factory=dict)
    routes: dict[str, route_pb2.RouteConfiguration] = field(default_factory=dict)

    def listener(self, message: listener_pb2.Listener) -> None:
        self.listeners[message.name] = message

    def cluster(self, message: cluster_pb2.Cluster) -> None:
        self.clusters[message.name] = message

    def load_assignment(self, message: endpoint_pb2.ClusterLoadAssignment) -> None:
        self.endpoints[message.cluster_name] = message

    def route(self, message: route_pb2.RouteConfiguration) -> None:
        self.routes[message.name] = message

    def freeze(self) -> ProxyResources:
        return ProxyResources(
            listeners=MappingProxyType(dict(sorted(self.listeners.items()))),
            clusters=MappingProxyType(dict(sorted(self.clusters.items()))),
            endpoints=MappingProxyType(dict(sorted(self.endpoints.items()))),
            routes=MappingProxyType(dict(sorted(self.routes.items()))))
