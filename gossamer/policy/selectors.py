"""Which proxies, inbounds, destinations and sources a targetRef selects, and policy order.

Top-level ``spec.targetRef`` (which proxies a policy applies to):

- ``Mesh``: every proxy of the mesh;
- ``MeshSubset``: proxies with an inbound carrying all of ``tags``;
- ``MeshService``: proxies with an inbound whose ``gossamer.io/service`` is ``name``;
- ``MeshServiceSubset``: as ``MeshService``, and that inbound also carries ``tags``;
- ``Dataplane``: the Dataplane called ``name``; with ``tags``, only if one of its
  inbounds carries them.

Inbound confs (``from[]``, ``rules[]``) apply only to the inbounds the targetRef selects
(a ``MeshService: web`` policy does not touch the same proxy's ``admin`` inbound);
outbound (``to[]``) and proxy-wide confs apply if the proxy is selected at all. When the
caller knows the proxy's zone, every inbound also carries ``gossamer.io/zone`` (unless it
sets it itself), and a proxy with no inbounds matches a ``MeshSubset`` on the zone tag
alone. A targetRef naming another ``mesh`` selects nothing here.

Policy order (``policy_order``): less specific top-level targetRef first; at equal
specificity global-origin before zone-origin (a policy without an origin label counts as
local, i.e. zone, like Kuma); then by name, ascending, so that of two equally specific
policies the one whose name sorts *later* is applied later and wins (Kuma sorts names the
same way). The canonical spec text breaks any remaining tie, so the order never depends
on the input order.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gossamer.model.base import Resource
from gossamer.model.dataplane import DataplaneSpec, Inbound
from gossamer.model.labels import (
    ORIGIN_GLOBAL,
    ORIGIN_LABEL,
    ORIGIN_ZONE,
    SERVICE_TAG,
    ZONE_LABEL,
    ZONE_TAG,
)
from gossamer.model.meshexternalservice import destination_key as external_key
from gossamer.model.policy import SPECIFICITY, TargetKind, TargetRef

# A tag selector as a sorted tuple of (key, value): hashable and canonical.
TagSet = tuple[tuple[str, str], ...]


@dataclass(frozen=True, order=True)
class InboundKey:
    """Identifies one inbound of a proxy: its port, and its address where it sets one."""

    port: int
    address: str | None = None

    @classmethod
    def of(cls, inbound: Inbound) -> InboundKey:
        return cls(port=inbound.port, address=inbound.address)


@dataclass(frozen=True)
class ProxyInbound:
    """One inbound as matching sees it: ``tags`` include the zone tag when known."""

    key: InboundKey
    tags: Mapping[str, str]


@dataclass(frozen=True)
class ProxyView:
    """The parts of a Dataplane that policy matching reads."""

    name: str
    mesh: str
    zone: str | None
    inbounds: tuple[ProxyInbound, ...]
    outbound_services: tuple[str, ...] = field(default=())

    @classmethod
    def of(cls, dataplane: Resource, zone: str | None = None) -> ProxyView:
        spec = dataplane.spec
        if not isinstance(spec, DataplaneSpec):
            raise TypeError(f"expected a Dataplane, got a {dataplane.type}")
        extra = {ZONE_TAG: zone} if zone else {}  # the CP's zone wins over an inbound's
        inbounds = tuple(ProxyInbound(InboundKey.of(ib), {**ib.tags, **extra})
                         for ib in spec.networking.inbound)
        outs = tuple(sorted({ob.service for ob in spec.networking.outbound}))
        return cls(name=dataplane.name, mesh=dataplane.mesh, zone=zone, inbounds=inbounds,
                   outbound_services=outs)

    @property
    def zone_tags(self) -> dict[str, str]:
        return {ZONE_TAG: self.zone} if self.zone else {}


def _has_all(tags: Mapping[str, str] | None, have: Mapping[str, str]) -> bool:
    return all(have.get(k) == v for k, v in (tags or {}).items())


def selects_inbound(ref: TargetRef, proxy: ProxyView, inbound: ProxyInbound) -> bool:
    """Does a top-level targetRef select this inbound of this proxy?"""
    if ref.mesh and ref.mesh != proxy.mesh:
        return False
    tags = inbound.tags
    if ref.kind is TargetKind.MESH:
        return True
    if ref.kind is TargetKind.MESH_SUBSET:
        return _has_all(ref.tags, tags)
    if ref.kind in (TargetKind.MESH_SERVICE, TargetKind.MESH_SERVICE_SUBSET):
        return tags.get(SERVICE_TAG) == ref.name and _has_all(ref.tags, tags)
    if ref.kind is TargetKind.DATAPLANE:
        return proxy.name == ref.name and _has_all(ref.tags, tags)
    return False


def selects_proxy(ref: TargetRef, proxy: ProxyView) -> bool:
    """Does a top-level targetRef select this proxy (for outbound and proxy-wide confs)?"""
    if ref.mesh and ref.mesh != proxy.mesh:
        return False
    if ref.kind is TargetKind.MESH:
        return True
    if ref.kind is TargetKind.DATAPLANE and not ref.tags:
        return proxy.name == ref.name
    if ref.kind is TargetKind.MESH_SUBSET and _has_all(ref.tags, proxy.zone_tags):
        return True  # e.g. {gossamer.io/zone: east}, also for a proxy with no inbounds
    return any(selects_inbound(ref, proxy, ib) for ib in proxy.inbounds)


# ``destination_key`` of a to[] item that targets every destination. Service names are
# never empty (an inbound needs a non-empty ``gossamer.io/service``), so "" is free.
ALL_DESTINATIONS = ""


def destination_key(ref: TargetRef, mesh: str) -> str | None:
    """Which destinations a ``to[].targetRef`` matches: ``ALL_DESTINATIONS`` for ``Mesh``,
    the service name for ``MeshService``, ``extsvc@<name>`` for ``MeshExternalService``
    (the key its outbounds are known by), None for none.

    Destinations are known by service name only, so subset kinds (which ``To`` does not
    accept today) match nothing rather than guessing.
    """
    if ref.mesh and ref.mesh != mesh:
        return None
    if ref.kind is TargetKind.MESH:
        return ALL_DESTINATIONS
    if ref.kind is TargetKind.MESH_SERVICE and ref.name:
        return ref.name
    if ref.kind is TargetKind.MESH_EXTERNAL_SERVICE and ref.name:
        return external_key(ref.name)  # never a service's name, never matched as one
    return None


def destination_matches(ref: TargetRef, service: str, mesh: str) -> bool:
    """Does a ``to[].targetRef`` match the destination ``service``?"""
    key = destination_key(ref, mesh)
    return key is not None and key in (ALL_DESTINATIONS, service)


def source_tags(ref: TargetRef, mesh: str) -> TagSet | None:
    """A ``from[].targetRef`` as the tags a source must carry (all of them).

    ``Mesh`` is the empty set (any source); ``MeshService: x`` is ``{service: x}``. None
    for a selector that can match no source of this mesh (another mesh, a subset whose
    tags contradict its service name, or a kind sources cannot be named by).
    """
    if ref.mesh and ref.mesh != mesh:
        return None
    tags: dict[str, str] = {}
    if ref.kind in (TargetKind.MESH_SERVICE, TargetKind.MESH_SERVICE_SUBSET):
        if ref.tags and ref.tags.get(SERVICE_TAG, ref.name) != ref.name:
            return None
        tags[SERVICE_TAG] = ref.name or ""
    elif ref.kind not in (TargetKind.MESH, TargetKind.MESH_SUBSET):
        return None
    tags.update(ref.tags or {})
    return tuple(sorted(tags.items()))


def origin_rank(policy: Resource) -> int:
    """0 for global-origin policies, 1 for the rest (zone-origin or local)."""
    return 0 if policy.labels.get(ORIGIN_LABEL) == ORIGIN_GLOBAL else 1


def applies_in_zone(policy: Resource, zone: str | None) -> bool:
    """A zone-origin policy applies only in its own zone (when both zones are known)."""
    if zone is None or policy.labels.get(ORIGIN_LABEL) != ORIGIN_ZONE:
        return True
    own = policy.labels.get(ZONE_LABEL)
    return own is None or own == zone


def top_target_ref(policy: Resource) -> TargetRef | None:
    """The policy's ``spec.targetRef``, or None for a resource that is not a policy."""
    ref = getattr(policy.spec, "target_ref", None)
    return ref if isinstance(ref, TargetRef) else None


def policy_order(policy: Resource) -> tuple[Any, ...]:
    """Sort key: policies that sort later are applied later and win conflicts."""
    ref = top_target_ref(policy)
    specificity = SPECIFICITY[ref.kind] if ref is not None else -1
    canonical = json.dumps(policy.spec_dict(), sort_keys=True)
    return (specificity, origin_rank(policy), policy.name,
            policy.labels.get(ZONE_LABEL, ""), canonical)
