"""``generate(ctx)``: every Envoy resource of one proxy, from its ``ProxyContext``.

Inbound listeners (``inbound``), outbound listeners with their routes, clusters and load
assignments (``outbound``), the Prometheus listener (``metrics``), and the collector
clusters that tracing and access logs point at. A Dataplane with
``transparentProxying`` gets the capture listeners (``transparent``), which serve its VIP
outbounds in place of listeners of their own. Pure: the same context gives equal
resources, and with a ``PieceCache`` the outbound clusters and load assignments are the
very objects other proxies with the same inputs got.
"""

from __future__ import annotations

from gossamer.model.meshmetric import MeshMetricConf
from gossamer.model.meshtrace import MeshTraceConf
from proxy.context import ProxyContext
from proxy.envoy import confs
from proxy.envoy.cache import PieceCache
from proxy.envoy.inbound import inbound_listener
from proxy.envoy.metrics import metrics_listeners
from proxy.envoy.outbound import outbound_listener
from proxy.envoy.resources import Builder, ProxyResources
from proxy.envoy.tracing import tracing
from proxy.envoy.transparent import capture_listeners, is_captured


def service_name(ctx: ProxyContext) -> str:
    """What this proxy's spans are reported as: its first inbound's service, else its
    Dataplane name (a proxy with outbounds only)."""
    inbounds = ctx.dataplane.networking.inbound
    return inbounds[0].service if inbounds else ctx.name


def generate(ctx: ProxyContext, cache: PieceCache | None = None) -> ProxyResources:
    out = Builder()
    trace, collector = tracing(confs.proxy(ctx.policies, confs.TRACE, MeshTraceConf),
                               service_name(ctx))
    if collector is not None:
        out.cluster(collector)
    for ib in ctx.dataplane.networking.inbound:
        inbound_listener(ctx, ib, trace, out)
    transparent = ctx.dataplane.networking.transparent_proxying is not None
    for ob in ctx.outbounds:
        if not (transparent and is_captured(ob)):
            outbound_listener(ctx, ob, trace, out, cache)
    capture_listeners(ctx, trace, out, cache)
    metrics_listeners(ctx, confs.proxy(ctx.policies, confs.METRIC, MeshMetricConf), out)
    return out.freeze()
