"""``shape_key(ctx)``: which proxies can share one ``generate_shape`` result.

A mesh-wide change touches every proxy of a zone, and proxies of one service differ
mostly in their addresses and names, which only their own part reads
(``generate.generate_own``). So a zone CP can build one shape per class of proxies and
combine it with each proxy's own part: the cost of a change then grows with the number
of distinct shapes more than with the number of proxies.

Theory of operation. ``generate_shape(ctx)`` reads, besides what the key holds:

- ``ctx.services``: the endpoints and protocols of the destinations;
- ``ctx.policies``: the outbound (``to[]``) confs of every kind and the proxy-wide
  MeshTrace and MeshPassthrough defaults (never the inbound confs, nor MeshMetric, nor
  ``dataplane``).

Those two are the same for every proxy of a mesh at one state generation only when the
caller makes them so, and are too big to hash per proxy. So the caller's contract is:
**proxies share a shape only if their keys are equal, they were built at the same state
generation, their ``services`` hold the same contents (one mapping per mesh and
generation) and their ``policies`` are equal but for ``dataplane`` (in practice: one
matching result shared by the class).** Everything else ``generate_shape`` reads is in
the key, and only that:

- ``mesh``, ``zone`` and ``passthrough``: mesh- or zone-wide, but a few bytes, and a
  key that holds them cannot be mixed up across meshes;
- ``outbounds``: every outbound listener (VIP ones too: the capture listener's chains);
- the transparent proxy's outbound redirect port, or None when it has none (its inbound
  port is the own part's);
- the name spans are reported under (``service_name``: the first inbound's service,
  else the Dataplane's name), but only when a MeshTrace default applies: otherwise a
  proxy with no inbounds would be a class of its own for a name nothing reads;
- the proxy's tags (``outbound.proxy_tags``) under the keys locality-aware load
  balancing prefers (``localityAwareness.localZone.affinityTags`` of any MeshLoad-
  BalancingStrategy ``to[]`` conf): those are the only tags load assignments read, so
  instances that differ in, say, ``version`` still share.

Not in the key, because the shape never reads them: the name, ``networking.address``,
inbound addresses, ports, service ports and other tags, ``mtls_mode`` (only the
inbound side has a plaintext chain) and the inbound redirect port.
``tests/unit/test_generate_shapes.py`` checks that equal keys give byte-identical shapes
for random contexts, and that changing anything the shape reads changes the key. Cost:
a tuple of a few fields, plus a walk over the load-balancing confs when the proxy has
any; hashing it hashes every outbound (about 0.4 µs each).
"""

from __future__ import annotations

from typing import NamedTuple

from gossamer.model.meshloadbalancingstrategy import MeshLoadBalancingStrategyConf
from gossamer.policy import ProxyPolicies
from proxy.context import OutboundListener, ProxyContext
from proxy.envoy import confs
from proxy.envoy.generate import service_name
from proxy.envoy.outbound import proxy_tags


class ShapeKey(NamedTuple):
    """What ``generate_shape`` reads of one proxy beyond its services and policies."""

    mesh: str
    zone: str
    passthrough: bool
    outbounds: tuple[OutboundListener, ...]
    redirect_port_outbound: int | None
    trace_service: str | None
    affinity: tuple[tuple[str, str], ...]


def affinity_keys(policies: ProxyPolicies) -> frozenset[str]:
    """Every tag key a load assignment of this proxy may prefer by locality."""
    kind = policies.kinds.get(confs.LOAD_BALANCING)
    if kind is None:
        return frozenset()
    merged = [*kind.outbounds.values(), kind.outbound_default]
    keys: set[str] = set()
    for found in merged:
        conf = found.conf if found is not None else None
        if not isinstance(conf, MeshLoadBalancingStrategyConf):
            continue
        aware = conf.locality_awareness
        local = aware.local_zone if aware is not None else None
        if local is not None:
            keys.update(tag.key for tag in local.affinity_tags or ())
    return frozenset(keys)


def shape_key(ctx: ProxyContext) -> ShapeKey:
    """The key under which ``generate_shape(ctx)`` may be shared: see the module doc for
    what the caller must hold equal besides."""
    ports = ctx.dataplane.networking.transparent_proxying
    traced = ctx.policies.kinds.get(confs.TRACE)
    keys = affinity_keys(ctx.policies)
    affinity: tuple[tuple[str, str], ...] = ()
    if keys:
        tags = proxy_tags(ctx)
        affinity = tuple((k, tags.get(k, "")) for k in sorted(keys))
    return ShapeKey(
        mesh=ctx.mesh, zone=ctx.zone, passthrough=ctx.passthrough, outbounds=ctx.outbounds,
        redirect_port_outbound=ports.redirect_port_outbound if ports is not None else None,
        trace_service=(service_name(ctx) if traced is not None and traced.proxy is not None
                       else None),
        affinity=affinity)
