"""MeshLoadBalancingStrategy → the cluster's ``lb_policy``, route hash policies, and the
locality plan that ``endpoints`` turns into EDS priorities.

``loadBalancer.type`` picks ``lb_policy`` (``ROUND_ROBIN``, ``LEAST_REQUEST`` with
``least_request_lb_config.choice_count``, ``RANDOM``, ``RING_HASH`` with
``ring_hash_lb_config``, ``MAGLEV`` with ``maglev_lb_config``). Ring hash and Maglev hash
what the route's ``hash_policy`` says (header, cookie, source IP, query parameter, filter
state); a TCP proxy can only hash the source IP or filter state.

Locality awareness (``Locality``), with the proxy's zone as the local one:

- default: local endpoints at priority 0, every other zone's ingress at priority 1;
- ``disabled``: everything at priority 0, weighted by instances;
- ``localZone.affinityTags``: the local endpoints split into localities by the first
  affinity tag whose value they share with this proxy, weighted (the locality weight,
  with ``locality_weighted_lb_config`` on the cluster) by the tag's weight or, without
  weights, 9:1 per step (n tags: 9^n, 9^(n-1), …, 1 for the rest);
- ``crossZone.failover``: the rules whose ``from`` includes this zone (or has none), in
  order, each one more priority: ``Any`` the zones not placed yet, ``Only`` the listed
  ones, ``AnyExcept`` all but the listed ones, ``None`` stops. Zones no rule reaches are
  not used at all;
- ``crossZone.failoverThreshold``: spill to the next priority when fewer than that
  percentage of hosts are healthy, as the load assignment's ``overprovisioning_factor``
  (10000 / threshold; Envoy's default 140 spills below ~71%).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.type.v3 import hash_policy_pb2
from google.protobuf import wrappers_pb2

from gossamer.model.meshloadbalancingstrategy import (
    FailoverToType,
    HashFunction,
    HashPolicy,
    HashPolicyType,
    LoadBalancerType,
    MeshLoadBalancingStrategyConf,
)
from proxy.envoy.protos import duration, percentage

_C = cluster_pb2.Cluster
_LB_POLICIES = {LoadBalancerType.ROUND_ROBIN: _C.ROUND_ROBIN,
                LoadBalancerType.LEAST_REQUEST: _C.LEAST_REQUEST,
                LoadBalancerType.RANDOM: _C.RANDOM,
                LoadBalancerType.RING_HASH: _C.RING_HASH,
                LoadBalancerType.MAGLEV: _C.MAGLEV}
_HASH_FUNCTIONS = {HashFunction.XX_HASH: _C.RingHashLbConfig.XX_HASH,
                   HashFunction.MURMUR_HASH_2: _C.RingHashLbConfig.MURMUR_HASH_2}
AFFINITY_STEP = 9
MAX_OVERPROVISIONING = 1_000_000


def apply_to_cluster(cluster: cluster_pb2.Cluster,
                     conf: MeshLoadBalancingStrategyConf | None) -> None:
    lb = conf.load_balancer if conf else None
    if lb is not None:
        cluster.lb_policy = _LB_POLICIES[lb.type]
        if lb.least_request and lb.least_request.choice_count:
            cluster.least_request_lb_config.choice_count.value = lb.least_request.choice_count
        ring = lb.ring_hash
        if lb.type is LoadBalancerType.RING_HASH and ring is not None:
            out = cluster.ring_hash_lb_config
            if ring.hash_function:
                out.hash_function = _HASH_FUNCTIONS[ring.hash_function]
            if ring.min_ring_size:
                out.minimum_ring_size.CopyFrom(wrappers_pb2.UInt64Value(value=ring.min_ring_size))
            if ring.max_ring_size:
                out.maximum_ring_size.CopyFrom(wrappers_pb2.UInt64Value(value=ring.max_ring_size))
        if lb.maglev and lb.maglev.table_size:
            cluster.maglev_lb_config.table_size.value = lb.maglev.table_size
    if Locality.of(conf, {}, "").affinity_keys:
        cluster.common_lb_config.locality_weighted_lb_config.SetInParent()


def _hash_policies(conf: MeshLoadBalancingStrategyConf | None) -> list[HashPolicy]:
    lb = conf.load_balancer if conf else None
    if lb is None:
        return []
    if lb.type is LoadBalancerType.RING_HASH and lb.ring_hash:
        return list(lb.ring_hash.hash_policies or [])
    if lb.type is LoadBalancerType.MAGLEV and lb.maglev:
        return list(lb.maglev.hash_policies or [])
    return []


def route_hash_policies(conf: MeshLoadBalancingStrategyConf | None
                        ) -> list[route_components_pb2.RouteAction.HashPolicy]:
    return [_route_hash(p) for p in _hash_policies(conf)]


def _route_hash(policy: HashPolicy) -> route_components_pb2.RouteAction.HashPolicy:
    out = route_components_pb2.RouteAction.HashPolicy(terminal=bool(policy.terminal))
    if policy.type is HashPolicyType.HEADER and policy.header:
        out.header.header_name = policy.header.name
    elif policy.type is HashPolicyType.COOKIE and policy.cookie:
        out.cookie.name = policy.cookie.name
        if policy.cookie.ttl:
            out.cookie.ttl.CopyFrom(duration(policy.cookie.ttl))
        if policy.cookie.path:
            out.cookie.path = policy.cookie.path
    elif policy.type is HashPolicyType.QUERY_PARAMETER and policy.query_parameter:
        out.query_parameter.name = policy.query_parameter.name
    elif policy.type is HashPolicyType.FILTER_STATE and policy.filter_state:
        out.filter_state.key = policy.filter_state.key
    else:
        out.connection_properties.source_ip = True
    return out


def apply_to_tcp_proxy(proxy: tcp_proxy_pb2.TcpProxy,
                       conf: MeshLoadBalancingStrategyConf | None) -> None:
    for policy in _hash_policies(conf):
        if policy.type is HashPolicyType.SOURCE_IP:
            proxy.hash_policy.append(hash_policy_pb2.HashPolicy(
                source_ip=hash_policy_pb2.HashPolicy.SourceIp()))
        elif policy.type is HashPolicyType.FILTER_STATE and policy.filter_state:
            proxy.hash_policy.append(hash_policy_pb2.HashPolicy(
                filter_state=hash_policy_pb2.HashPolicy.FilterState(key=policy.filter_state.key)))


@dataclass(frozen=True)
class FailoverStep:
    """One cross-zone priority: ``kind`` of ``FailoverToType`` and its zones."""

    kind: str
    zones: tuple[str, ...] = ()


@dataclass(frozen=True)
class Locality:
    """How a load assignment orders its localities (hashable: a cache key part).

    ``affinity``: ``(tag key, this proxy's value, weight)`` per affinity tag, most
    important first; ``failover``: the cross-zone steps, or None for the default (every
    other zone at one priority after the local one); ``overprovisioning``: the factor
    for ``failoverThreshold``, or None for Envoy's default.
    """

    disabled: bool = False
    affinity: tuple[tuple[str, str, int], ...] = ()
    failover: tuple[FailoverStep, ...] | None = None
    overprovisioning: int | None = None

    @property
    def affinity_keys(self) -> tuple[str, ...]:
        return tuple(k for k, _, _ in self.affinity)

    @classmethod
    def of(cls, conf: MeshLoadBalancingStrategyConf | None, proxy_tags: Mapping[str, str],
           zone: str) -> Locality:
        """The plan for a proxy in ``zone`` whose inbounds carry ``proxy_tags``."""
        aware = conf.locality_awareness if conf else None
        if aware is None:
            return cls()
        if aware.disabled:
            return cls(disabled=True)
        tags = aware.local_zone.affinity_tags if aware.local_zone else None
        count = len(tags or [])
        affinity = tuple(
            (t.key, proxy_tags.get(t.key, ""),
             t.weight if t.weight is not None else AFFINITY_STEP ** (count - i))
            for i, t in enumerate(tags or []))
        cross = aware.cross_zone
        failover = None
        if cross and cross.failover:
            steps = []
            for rule in cross.failover:
                if rule.from_ is not None and zone not in rule.from_.zones:
                    continue
                steps.append(FailoverStep(rule.to.type.value, tuple(rule.to.zones or ())))
            failover = tuple(steps)
        factor = None
        if cross and cross.failover_threshold:
            threshold = percentage(cross.failover_threshold.percentage)
            factor = (MAX_OVERPROVISIONING if threshold <= 0
                      else min(MAX_OVERPROVISIONING, max(100, round(10000 / threshold))))
        return cls(affinity=affinity, failover=failover, overprovisioning=factor)

    def zone_priorities(self, zones: tuple[str, ...]) -> list[tuple[str, ...]]:
        """Remote ``zones`` grouped by priority, highest first (after the local zone)."""
        if self.disabled:
            return [zones]
        if self.failover is None:
            return [zones]
        left = list(zones)
        out: list[tuple[str, ...]] = []
        for step in self.failover:
            if step.kind == FailoverToType.NONE.value:
                break
            if step.kind == FailoverToType.ANY.value:
                chosen = list(left)
            elif step.kind == FailoverToType.ONLY.value:
                chosen = [z for z in left if z in step.zones]
            else:
                chosen = [z for z in left if z not in step.zones]
            left = [z for z in left if z not in chosen]
            out.append(tuple(chosen))
        return out

    def affinity_group(self, tags: Mapping[str, str]) -> tuple[str, int]:
        """Which local locality an endpoint with ``tags`` falls in, and its weight."""
        for key, value, weight in self.affinity:
            if value and tags.get(key) == value:
                return f"{key}={value}", weight
        return "", 1
