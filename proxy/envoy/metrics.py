"""MeshMetric → a Prometheus listener serving Envoy's stats.

Each ``Prometheus`` backend becomes a listener ``prometheus:<port>`` (default 5670) on the
Dataplane's address, with an HTTP connection manager whose route configuration (same
name, by RDS) sends ``GET <path>`` (default ``/metrics``) to the admin interface through
the bootstrap's ``ADMIN_CLUSTER`` (``gossamer_admin``), rewritten to
``/stats/prometheus``; any other path gets 404. Only that one admin path is reachable.

- Envoy has only the stats its bootstrap keeps (``proxy.stats_matcher``: every family
  any profile can serve, so no MeshMetric change needs an Envoy restart), so ``All`` is
  every stat the mesh keeps, and an unused cluster has no traffic stats until it is used;
- ``sidecar.includeUnused`` false (the default) adds ``usedonly`` to the admin query;
- ``sidecar.profiles``: with ``appendProfiles: [None]`` only stats matching an
  ``include`` selector are served (an admin ``filter`` regex: ``Exact``/``Prefix``/
  ``Contains`` are escaped and anchored, ``Regex`` is taken as is); the ``Basic`` profile
  is served as ``All``, and ``exclude`` selectors are not applied (the admin filter is
  one RE2 regex, which cannot express "all but"): left to the agent's metrics merger;
- ``tls.mode``: ``Disabled`` plaintext; ``ActiveMTLSBackend`` the workload identity with
  client certificates from the mesh required, which is mesh mTLS and so TLS 1.3 only
  (``tls.MESH_TLS_PARAMS``); ``ProvidedTLS`` the SDS secret ``PROMETHEUS_TLS_SECRET`` the
  agent serves from the operator's files, TLS 1.2 or later.

``applications`` (scraped and merged by the agent) and ``OpenTelemetry`` backends (a
bootstrap ``stats_sinks`` entry, not an xDS resource) are the agent's part.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc_pb2
from envoy.config.route.v3 import route_pb2

from gossamer.model.meshmetric import (
    BackendType,
    MeshMetricConf,
    ProfileName,
    PrometheusBackend,
    Selector,
    SelectorType,
    TlsMode,
)
from proxy.context import ADMIN_CLUSTER, PROMETHEUS_TLS_SECRET, ProxyContext
from proxy.envoy import names, tls
from proxy.envoy.http import HttpSettings, connection_manager
from proxy.envoy.protos import buffer_limit, listen_address, socket_address, stat_prefix
from proxy.envoy.resources import Builder

DEFAULT_PORT = 5670
DEFAULT_PATH = "/metrics"
ADMIN_PATH = "/stats/prometheus"
NOTHING = "^$"  # a stat name is never empty


def _selector_regex(selector: Selector) -> str:
    text = selector.match
    if selector.type is SelectorType.REGEX:
        return text
    if selector.type is SelectorType.EXACT:
        return f"^{re.escape(text)}$"
    if selector.type is SelectorType.PREFIX:
        return f"^{re.escape(text)}"
    return re.escape(text)


def admin_query(conf: MeshMetricConf) -> str:
    params = []
    sidecar = conf.sidecar
    if not (sidecar and sidecar.include_unused):
        params.append("usedonly")
    profiles = sidecar.profiles if sidecar else None
    appended = {p.name for p in profiles.append_profiles or []} if profiles else set()
    if ProfileName.NONE in appended and not appended & {ProfileName.ALL, ProfileName.BASIC}:
        include = profiles.include if profiles else None
        pattern = "|".join(f"(?:{_selector_regex(s)})" for s in include or []) or NOTHING
        params.append("filter=" + quote(pattern, safe=""))
    return "?" + "&".join(params) if params else ""


def _route_config(name: str, path: str, query: str) -> route_pb2.RouteConfiguration:
    scrape = rc_pb2.Route(
        name=f"{name}:scrape", match=rc_pb2.RouteMatch(path=path),
        route=rc_pb2.RouteAction(cluster=ADMIN_CLUSTER, prefix_rewrite=ADMIN_PATH + query))
    other = rc_pb2.Route(name=f"{name}:other", match=rc_pb2.RouteMatch(prefix="/"),
                         direct_response=rc_pb2.DirectResponseAction(status=404))
    return route_pb2.RouteConfiguration(name=name, virtual_hosts=[
        rc_pb2.VirtualHost(name="prometheus", domains=["*"], routes=[scrape, other])])


def _listener(ctx: ProxyContext, conf: MeshMetricConf, backend: PrometheusBackend,
              out: Builder) -> None:
    port = backend.port or DEFAULT_PORT
    name = names.prometheus(port)
    out.route(_route_config(name, backend.path or DEFAULT_PATH, admin_query(conf)))
    chain = lc_pb2.FilterChain(filters=[connection_manager(HttpSettings(
        stat_prefix=stat_prefix(name), route_name=name))])
    mode = backend.tls.mode if backend.tls else TlsMode.DISABLED
    if mode is TlsMode.ACTIVE_MTLS_BACKEND:
        chain.transport_socket.CopyFrom(tls.transport_socket(tls.downstream_context()))
    elif mode is TlsMode.PROVIDED_TLS:
        chain.transport_socket.CopyFrom(tls.transport_socket(
            tls.provided_context(PROMETHEUS_TLS_SECRET)))
    address = listen_address(ctx.dataplane.networking.address)
    out.listener(listener_pb2.Listener(
        name=name, address=socket_address(address, port), stat_prefix=stat_prefix(name),
        traffic_direction=base_pb2.INBOUND, filter_chains=[chain],
        per_connection_buffer_limit_bytes=buffer_limit(),
        # Scrapes go on when the connection limit is reached: that is when they matter.
        ignore_global_conn_limit=True))


def metrics_listeners(ctx: ProxyContext, conf: MeshMetricConf | None, out: Builder) -> None:
    if conf is None:
        return
    for backend in conf.backends or []:
        if backend.type is BackendType.PROMETHEUS:
            _listener(ctx, conf, backend.prometheus or PrometheusBackend(), out)
