"""The ClusterLoadAssignment of an outbound cluster: local instances and zone ingresses.

``endpoints(cluster_name, hosts, zone, locality)`` depends only on its (hashable)
arguments, so the zone CP computes it once per (service, subset, zone, locality plan)
and sends the same message to every proxy that uses it.

Layout (see ``load_balancing`` for what ``Locality`` changes):

- local instances (``Service.endpoints``): priority 0, one locality ``zone=<proxy's
  zone>`` (or one per affinity group), each endpoint with its own weight and health;
  every endpoint carries its tags (but service and protocol) as ``envoy.lb`` metadata,
  for MeshRetry's ``OmitHostMetadata`` host predicate, and the service's mesh DNS name
  (``<service>.mesh``) as its ``hostname``, which MeshHTTPRoute's
  ``hostToBackendHostname`` (``auto_host_rewrite``) puts in the Host header;
- each remote zone (``Service.remote``): priority 1, a locality ``zone=<remote zone>``
  with ``load_balancing_weight`` = its instance count and one endpoint per ingress of the
  zone, sharing that weight (so zones split traffic by instances whether or not locality
  weighting is on, and a zone's ingresses share its traffic);
- every locality always has a ``load_balancing_weight`` (gRPC's xDS client drops
  localities without one); priorities are renumbered to leave no gaps, so a service with
  no local instances has its remote zones at priority 0.

EDS carries IP addresses only (Envoy resolves no names there, and one hostname would get
the whole assignment NACKed), so an instance or ingress known by a hostname is left out.
Ingresses advertised by name arrive here already resolved: the zone CP resolves them
(``zone_cp.ingress_names``) and passes one ``RemoteZone`` per address, which keeps a
cross-zone cluster one EDS cluster (rather than an EDS part and a ``STRICT_DNS`` part).

A subset (a backend selected by tags) holds only the local instances carrying those tags:
an ingress cannot tell which of its zone's instances carry them (the SNI names only the
service), so subsets do not cross zones.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from envoy.config.core.v3 import base_pb2, health_check_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2 as ec_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from google.protobuf import struct_pb2

from gossamer.model.labels import PROTOCOL_TAG, SERVICE_TAG
from gossamer.policy.selectors import TagSet
from proxy.context import RemoteZone, Service
from proxy.envoy.load_balancing import Locality
from proxy.envoy.names import tag_set
from proxy.envoy.protos import is_ip, socket_address, u32

NO_LOCALITY_POLICY = Locality()
# Tags every instance of a service shares: no use as host metadata.
_SAME_FOR_ALL = frozenset({SERVICE_TAG, PROTOCOL_TAG})


@dataclass(frozen=True)
class Host:
    """A local instance, hashable (tags as a sorted tuple)."""

    address: str
    port: int
    weight: int = 1
    healthy: bool = True
    tags: TagSet = ()


@dataclass(frozen=True)
class Hosts:
    """What a load assignment is made of: local instances and remote zones."""

    local: tuple[Host, ...] = ()
    remote: tuple[RemoteZone, ...] = ()
    hostname: str = ""

    def __hash__(self) -> int:
        # Kept once computed: a ``PieceCache`` key holds the hosts, and hashing every
        # host again for each caller's lookup cost more than building the key.
        found: int | None = self.__dict__.get("_hash")
        if found is None:
            found = hash((self.local, self.remote, self.hostname))
            object.__setattr__(self, "_hash", found)
        return found

    @classmethod
    def of(cls, service: Service, subset: TagSet = ()) -> Hosts:
        local = []
        for e in service.endpoints:
            if all(e.tags.get(k) == v for k, v in subset):
                local.append(Host(e.address, e.port, e.weight, e.healthy, tag_set(dict(e.tags))))
        remote = () if subset else tuple(sorted(service.remote, key=lambda r: r.zone))
        return cls(tuple(sorted(local, key=lambda h: (h.address, h.port))), remote,
                   mesh_hostname(service.name))

    def pinned(self, zone: str, own_zone: str) -> Hosts:
        """Only the instances in ``zone``: the local ones when it is the proxy's own
        (``own_zone``), else that zone's ingresses."""
        if zone == own_zone:
            return Hosts(self.local, (), self.hostname)
        return Hosts((), tuple(r for r in self.remote if r.zone == zone), self.hostname)


def mesh_hostname(service: str) -> str:
    """The service's name in the mesh's DNS (``backend.mesh``)."""
    return f"{service}.mesh"


def _lb_endpoint(address: str, port: int, weight: int, healthy: bool, hostname: str,
                 tags: TagSet = ()) -> ec_pb2.LbEndpoint:
    out = ec_pb2.LbEndpoint(
        endpoint=ec_pb2.Endpoint(address=socket_address(address, port), hostname=hostname),
        health_status=health_check_pb2.HEALTHY if healthy else health_check_pb2.UNHEALTHY,
        load_balancing_weight=u32(max(1, weight)))
    own = {k: v for k, v in tags if k not in _SAME_FOR_ALL}
    if own:
        meta = struct_pb2.Struct()
        meta.update(own)
        out.metadata.filter_metadata["envoy.lb"].CopyFrom(meta)
    return out


def _local(hosts: Hosts, zone: str, locality: Locality) -> list[ec_pb2.LocalityLbEndpoints]:
    groups: dict[str, list[Host]] = defaultdict(list)
    weights: dict[str, int] = {}
    for host in (h for h in hosts.local if is_ip(h.address)):
        group, weight = locality.affinity_group(dict(host.tags))
        groups[group].append(host)
        weights[group] = weight
    out = []
    for group in sorted(groups, key=lambda g: (-weights[g], g)):
        members = groups[group]
        weight = weights[group] if locality.affinity else sum(max(1, h.weight) for h in members)
        out.append(ec_pb2.LocalityLbEndpoints(
            locality=base_pb2.Locality(zone=zone, sub_zone=group),
            load_balancing_weight=u32(weight),
            lb_endpoints=[_lb_endpoint(h.address, h.port, h.weight, h.healthy,
                                       hosts.hostname, h.tags)
                          for h in members]))
    return out


def _remote(ingresses: list[RemoteZone], hostname: str) -> ec_pb2.LocalityLbEndpoints:
    """One remote zone: a locality weighted by the zone's instances, holding every
    ingress of the zone; the zone's weight is shared among them, so a zone with two
    ingresses gets no more traffic than one with one."""
    weight = max(1, max(i.instances for i in ingresses))
    each = max(1, weight // len(ingresses))
    return ec_pb2.LocalityLbEndpoints(
        locality=base_pb2.Locality(zone=ingresses[0].zone), load_balancing_weight=u32(weight),
        lb_endpoints=[_lb_endpoint(i.address, i.port, each, True, hostname)
                      for i in sorted(ingresses, key=lambda i: (i.address, i.port))])


def endpoints(cluster_name: str, hosts: Hosts, zone: str,
              locality: Locality = NO_LOCALITY_POLICY) -> endpoint_pb2.ClusterLoadAssignment:
    """The load assignment of ``cluster_name`` for proxies in ``zone``."""
    local = _local(hosts, zone, locality)
    by_zone: dict[str, list[RemoteZone]] = defaultdict(list)
    for ingress in hosts.remote:
        if ingress.zone != zone and is_ip(ingress.address):
            by_zone[ingress.zone].append(ingress)
    levels: list[list[ec_pb2.LocalityLbEndpoints]] = [local]
    for zones in locality.zone_priorities(tuple(sorted(by_zone))):
        level = [_remote(by_zone[z], hosts.hostname) for z in zones]
        if locality.disabled:
            levels[0].extend(level)
        else:
            levels.append(level)
    out = endpoint_pb2.ClusterLoadAssignment(cluster_name=cluster_name)
    for priority, level in enumerate(lv for lv in levels if lv):
        for group in level:
            group.priority = priority
            out.endpoints.append(group)
    if locality.overprovisioning is not None:
        out.policy.overprovisioning_factor.CopyFrom(u32(locality.overprovisioning))
    return out
