"""The transparent proxy's capture listeners: what Envoy does with redirected traffic.

``gossamer proxy redirect install`` sends a workload's outbound TCP to
``127.0.0.1:<redirectPortOutbound>`` and inbound TCP to ``<its address>:
<redirectPortInbound>``, conntrack keeping the original destination. A Dataplane with
``networking.transparentProxying`` gets two listeners for them, each with the
``original_dst`` listener filter, which restores the original destination as the
connection's local address. Envoy then picks a filter chain by that address
(``filter_chain_match.prefix_ranges`` and ``destination_port``), so one listener serves
every destination; no per-VIP listener with ``bind_to_port: false`` and no
``use_original_dst`` hand-off between listeners:

- ``transparent:outbound`` on ``127.0.0.1``: one chain per outbound that is not on
  loopback (the VIP outbounds: ``<vip>/32`` and the port) with the very filter the VIP's
  own listener would have (``outbound.outbound_filter``: HTTP routes, timeouts, retries,
  faults, access logs; or ``tcp_proxy``), and one chain per service instance
  (``<endpoint ip>/32`` and its port) with the filter of that service's first outbound,
  so a call to a real endpoint IP goes through the mesh (mTLS, load balancing) too.
  Anything else: the default chain, a ``tcp_proxy`` to ``gossamer_passthrough`` (an
  ``ORIGINAL_DST`` cluster: the original address), or no default chain when the Mesh
  says ``networking.outbound.passthrough: false``, and Envoy closes the connection.
- ``transparent:inbound`` on ``0.0.0.0`` (``redirect`` in prerouting rewrites to the
  receiving interface's address): one set of chains per inbound, matched on its port,
  the same chains as its own listener (mTLS, RBAC, inbound policies); anything else
  passes through to its original destination.

Both listeners close a connection whose original destination is their own port: one
that reached them without a redirect would otherwise be passed to itself for ever.

Outbounds on loopback (explicit ``127.0.0.1:<port>`` outbounds) keep their listeners:
the redirect lets traffic to 127.0.0.0/8 pass. VIP outbounds get no listener of their
own in this mode, so the VIP range needs no route on ``lo``. Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.listener.original_dst.v3 import original_dst_pb2

from gossamer.model.dataplane import TransparentProxying
from gossamer.model.meshpassthrough import MeshPassthroughConf, PassthroughMode
from proxy.context import OutboundListener, ProxyContext
from proxy.envoy import confs
from proxy.envoy.cache import PieceCache
from proxy.envoy.inbound import PERMISSIVE, inbound_chains, tls_inspector
from proxy.envoy.outbound import Tracing, outbound_filter
from proxy.envoy.passthrough import (
    PASSTHROUGH_CLUSTER,
    effective_mode,
    matched_chains,
    passthrough_cluster,
)
from proxy.envoy.passthrough import tcp_to as _tcp_to
from proxy.envoy.protos import buffer_limit, duration, pack, socket_address, stat_prefix, u32
from proxy.envoy.resources import Builder

OUTBOUND_LISTENER = "transparent:outbound"
INBOUND_LISTENER = "transparent:inbound"
OUTBOUND_ADDRESS = "127.0.0.1"
INBOUND_ADDRESS = "0.0.0.0"
# A cluster with no endpoints: a connection sent there is closed at once.
BLACKHOLE_CLUSTER = "gossamer_blackhole"
ORIGINAL_DST = "envoy.filters.listener.original_dst"
PASSTHROUGH_CONNECT_TIMEOUT = "5s"
__all__ = ["PASSTHROUGH_CLUSTER", "passthrough_cluster"]  # re-exported: generate uses them


def is_captured(outbound: OutboundListener) -> bool:
    """Whether ``outbound`` is served by the capture listener rather than a listener of
    its own: every address but loopback (whose traffic the redirect lets pass)."""
    return not ipaddress.ip_address(outbound.address).is_loopback


def _host(address: str, port: int) -> lc_pb2.FilterChainMatch:
    ip = ipaddress.ip_address(address)
    match = lc_pb2.FilterChainMatch(destination_port=u32(port))
    match.prefix_ranges.add(address_prefix=str(ip), prefix_len=u32(ip.max_prefixlen))
    return match


def blackhole_cluster() -> cluster_pb2.Cluster:
    return cluster_pb2.Cluster(name=BLACKHOLE_CLUSTER, type=cluster_pb2.Cluster.STATIC,
                               connect_timeout=duration(PASSTHROUGH_CONNECT_TIMEOUT),
                               per_connection_buffer_limit_bytes=buffer_limit())


def _self_chain(port: int, name: str) -> lc_pb2.FilterChain:
    """Closes connections whose original destination is the capture port itself."""
    return lc_pb2.FilterChain(name=f"{name}:self",
                              filter_chain_match=lc_pb2.FilterChainMatch(
                                  destination_port=u32(port)),
                              filters=[_tcp_to(BLACKHOLE_CLUSTER, name)])


def _capture_listener(name: str, address: str, port: int,
                      direction: base_pb2.TrafficDirection.ValueType) -> listener_pb2.Listener:
    return listener_pb2.Listener(
        name=name, address=socket_address(address, port), traffic_direction=direction,
        stat_prefix=stat_prefix(name), per_connection_buffer_limit_bytes=buffer_limit(),
        listener_filters=[lc_pb2.ListenerFilter(
            name=ORIGINAL_DST, typed_config=pack(original_dst_pb2.OriginalDst()))])


def _endpoint_targets(ctx: ProxyContext, captured: list[OutboundListener]
                      ) -> Iterator[tuple[str, int, OutboundListener]]:
    """Each local instance of a service this proxy calls, with the outbound whose
    filter it shares (the service's first)."""
    first: dict[str, OutboundListener] = {}
    for ob in [*ctx.outbounds, *captured]:
        if not ob.zone:  # a zone-pinned VIP's filter sends to one zone only
            first.setdefault(ob.service, ob)
    for service, ob in sorted(first.items()):
        known = ctx.services.get(service)
        for endpoint in known.endpoints if known else ():
            yield endpoint.address, endpoint.port, ob


def _outbound_chains(ctx: ProxyContext, tracing: Tracing | None, out: Builder,
                     cache: PieceCache | None, seen: set[tuple[str, int]]
                     ) -> list[lc_pb2.FilterChain]:
    """The mesh's chains; ``seen`` collects the (address, port) pairs they claim."""
    captured = [ob for ob in ctx.outbounds if is_captured(ob)]
    built: dict[OutboundListener, lc_pb2.Filter] = {}
    chains: list[lc_pb2.FilterChain] = []

    def chain(address: str, port: int, ob: OutboundListener) -> None:
        if (address, port) in seen:
            return  # the first claim wins; Envoy refuses two chains with one match
        seen.add((address, port))
        if ob not in built:
            built[ob] = outbound_filter(ctx, ob, tracing, out, cache)
        chains.append(lc_pb2.FilterChain(name=f"{ob.service}:{address}:{port}",
                                         filter_chain_match=_host(address, port),
                                         filters=[built[ob]]))

    for ob in captured:
        chain(ob.address, ob.port, ob)
    for address, port, ob in _endpoint_targets(ctx, captured):
        chain(address, port, ob)
    return chains


def outbound_capture(ctx: ProxyContext, ports: TransparentProxying, tracing: Tracing | None,
                     out: Builder, cache: PieceCache | None = None) -> None:
    """Add the outbound capture listener and everything its chains route to."""
    port = ports.redirect_port_outbound
    listener = _capture_listener(OUTBOUND_LISTENER, OUTBOUND_ADDRESS, port, base_pb2.OUTBOUND)
    listener.filter_chains.append(_self_chain(port, OUTBOUND_LISTENER))
    claimed: set[tuple[str, int]] = set()
    listener.filter_chains.extend(_outbound_chains(ctx, tracing, out, cache, claimed))
    conf = confs.proxy(ctx.policies, confs.PASSTHROUGH, MeshPassthroughConf)
    mode = effective_mode(conf, ctx.passthrough)
    if mode is PassthroughMode.ALL:
        listener.default_filter_chain.CopyFrom(lc_pb2.FilterChain(
            name=f"{OUTBOUND_LISTENER}:passthrough",
            filters=[_tcp_to(PASSTHROUGH_CLUSTER, f"{OUTBOUND_LISTENER}:passthrough")]))
    elif mode is PassthroughMode.MATCHED and conf is not None:
        chains, inspector = matched_chains(conf, claimed, OUTBOUND_LISTENER, out)
        listener.filter_chains.extend(chains)
        if inspector is not None:
            listener.listener_filters.append(inspector)
    out.listener(listener)


def inbound_capture(ctx: ProxyContext, ports: TransparentProxying, tracing: Tracing | None,
                    out: Builder) -> None:
    """Add the inbound capture listener: each inbound's chains by port, else passthrough."""
    port = ports.redirect_port_inbound
    listener = _capture_listener(INBOUND_LISTENER, INBOUND_ADDRESS, port, base_pb2.INBOUND)
    listener.filter_chains.append(_self_chain(port, INBOUND_LISTENER))
    seen: set[int] = set()
    for ib in ctx.dataplane.networking.inbound:
        if ib.port in seen:
            continue  # the same port on two addresses: the first inbound takes it
        seen.add(ib.port)
        for chain in inbound_chains(ctx, ib, tracing, out):
            chain.filter_chain_match.destination_port.value = ib.port
            listener.filter_chains.append(chain)
    if ctx.mtls_mode == PERMISSIVE:
        listener.listener_filters.append(tls_inspector())
    listener.default_filter_chain.CopyFrom(lc_pb2.FilterChain(
        name=f"{INBOUND_LISTENER}:passthrough",
        filters=[_tcp_to(PASSTHROUGH_CLUSTER, f"{INBOUND_LISTENER}:passthrough")]))
    out.listener(listener)
