"""``generate(ctx)``: every Envoy resource of one proxy, from its ``ProxyContext``, in two
parts that a zone CP can build at different rates.

- The **shape** (``generate_shape``): the outbound listeners with their routes, clusters
  and load assignments (``outbound``), the capture listener for outbound traffic and its
  passthrough and blackhole clusters (``transparent``), and the tracing collector. None of
  it reads the proxy's name or addresses, so proxies with equal ``shapes.shape_key`` (and
  equal services and outbound policies: see ``shapes``) get equal shapes, and a zone CP
  can build one per class of such proxies.
- The proxy's **own** part (``generate_own``): what names or binds its own addresses, or
  reads its inbound policies: one listener per inbound with its route configuration,
  local application cluster and access-log collectors (``inbound``), the capture listener
  for inbound traffic (its chains carry the inbounds' listener names), and the
  Prometheus listener on the Dataplane's address (``metrics``).

``combine(shape, own)`` is what ``generate`` returns. A name in both parts is a collector
cluster that inbound and outbound access logs or tracing both point at, built from the
same endpoint, so which one wins does not show. Pure: the same context gives equal
resources, and with a ``PieceCache`` the outbound clusters and load assignments are the
very objects other proxies with the same inputs got.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TypeVar

from envoy.config.cluster.v3 import cluster_pb2
from google.protobuf.message import Message

from gossamer.model.meshmetric import MeshMetricConf
from gossamer.model.meshtrace import MeshTraceConf
from proxy.context import ProxyContext
from proxy.envoy import confs
from proxy.envoy.cache import PieceCache
from proxy.envoy.inbound import inbound_listener
from proxy.envoy.metrics import metrics_listeners
from proxy.envoy.outbound import Tracing, outbound_listener
from proxy.envoy.resources import Builder, ProxyResources
from proxy.envoy.tracing import tracing
from proxy.envoy.transparent import (
    blackhole_cluster,
    inbound_capture,
    is_captured,
    outbound_capture,
    passthrough_cluster,
)

M = TypeVar("M", bound=Message)


def service_name(ctx: ProxyContext) -> str:
    """What this proxy's spans are reported as: its first inbound's service, else its
    Dataplane name (a proxy with outbounds only)."""
    inbounds = ctx.dataplane.networking.inbound
    return inbounds[0].service if inbounds else ctx.name


def proxy_tracing(ctx: ProxyContext) -> tuple[Tracing | None, cluster_pb2.Cluster | None]:
    """The tracing block every HTTP connection manager of the proxy carries (both parts
    embed it) and its collector cluster, from the proxy-wide MeshTrace."""
    return tracing(confs.proxy(ctx.policies, confs.TRACE, MeshTraceConf), service_name(ctx))


def generate_shape(ctx: ProxyContext, cache: PieceCache | None = None) -> ProxyResources:
    """Everything of the proxy that does not read its name or addresses: see the module
    doc. What it reads is what ``shapes.shape_key`` covers."""
    out = Builder()
    trace, collector = proxy_tracing(ctx)
    if collector is not None:
        out.cluster(collector)
    ports = ctx.dataplane.networking.transparent_proxying
    for ob in ctx.outbounds:
        if not (ports is not None and is_captured(ob)):
            outbound_listener(ctx, ob, trace, out, cache)
    if ports is not None:
        out.cluster(passthrough_cluster())
        out.cluster(blackhole_cluster())
        outbound_capture(ctx, ports, trace, out, cache)
    return out.freeze()


def generate_own(ctx: ProxyContext) -> ProxyResources:
    """The proxy's own resources: its inbounds, its inbound capture listener and its
    Prometheus listener, all of which name or bind its addresses."""
    out = Builder()
    trace, _ = proxy_tracing(ctx)  # the collector cluster is the shape's
    for ib in ctx.dataplane.networking.inbound:
        inbound_listener(ctx, ib, trace, out)
    ports = ctx.dataplane.networking.transparent_proxying
    if ports is not None:
        inbound_capture(ctx, ports, trace, out)
    metrics_listeners(ctx, confs.proxy(ctx.policies, confs.METRIC, MeshMetricConf), out)
    return out.freeze()


def _merged(shape: Mapping[str, M], own: Mapping[str, M]) -> Mapping[str, M]:
    if not own:
        return shape  # read-only already; nothing to sort in
    both = {**shape, **own}
    return MappingProxyType(dict(sorted(both.items())))


def combine(shape: ProxyResources, own: ProxyResources) -> ProxyResources:
    """One proxy's resources from its (possibly shared) shape and its own part. The
    shape's messages go in as they are: shared, never copied."""
    return ProxyResources(
        listeners=_merged(shape.listeners, own.listeners),
        clusters=_merged(shape.clusters, own.clusters),
        endpoints=_merged(shape.endpoints, own.endpoints),
        routes=_merged(shape.routes, own.routes))


def generate(ctx: ProxyContext, cache: PieceCache | None = None) -> ProxyResources:
    """Every resource of the proxy: ``combine(generate_shape(ctx, cache),
    generate_own(ctx))``."""
    return combine(generate_shape(ctx, cache), generate_own(ctx))
