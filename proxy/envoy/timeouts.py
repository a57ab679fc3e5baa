"""MeshTimeout → Envoy timeouts, on clusters, connection managers, routes and TCP proxies.

Uses Envoy's ``connect_timeout`` (cluster), ``common_http_protocol_options`` idle and
connection-duration timeouts (upstream in the cluster's ``HttpProtocolOptions``,
downstream in the HTTP connection manager), ``stream_idle_timeout`` and
``request_headers_timeout`` (connection manager), the route ``timeout`` and
``max_stream_duration``, and the TCP proxy's ``idle_timeout``:

| MeshTimeout                  | Envoy                                                    |
|------------------------------|----------------------------------------------------------|
| connectionTimeout            | cluster ``connect_timeout`` (default 5s)                 |
| idleTimeout                  | TCP proxy ``idle_timeout``; HTTP: upstream and downstream |
|                              | ``common_http_protocol_options.idle_timeout``            |
| http.requestTimeout          | route ``timeout`` (504 when it fires)                    |
| http.streamIdleTimeout       | connection manager ``stream_idle_timeout``               |
| http.maxStreamDuration       | route ``max_stream_duration.max_stream_duration``        |
| http.maxConnectionDuration   | upstream ``common_http_protocol_options``                |
| http.requestHeadersTimeout   | connection manager ``request_headers_timeout``           |

Outbound listeners and clusters take the destination's ``to[]`` conf; inbound ones the
inbound's conf (``confs.inbound``). Unset values keep Envoy's defaults.
"""

from __future__ import annotations

from envoy.config.core.v3 import protocol_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from google.protobuf import duration_pb2

from gossamer.model.meshtimeout import MeshTimeoutConf
from proxy.envoy.protos import duration

DEFAULT_CONNECT_TIMEOUT = "5s"


def connect_timeout(conf: MeshTimeoutConf | None) -> duration_pb2.Duration:
    return duration(conf.connection_timeout if conf and conf.connection_timeout
                    else DEFAULT_CONNECT_TIMEOUT)


def upstream_http_options(conf: MeshTimeoutConf | None) -> protocol_pb2.HttpProtocolOptions:
    """Timeouts of a cluster's pooled HTTP connections (empty when none is set)."""
    out = protocol_pb2.HttpProtocolOptions()
    if conf is None:
        return out
    if conf.idle_timeout:
        out.idle_timeout.CopyFrom(duration(conf.idle_timeout))
    if conf.http and conf.http.max_connection_duration:
        out.max_connection_duration.CopyFrom(duration(conf.http.max_connection_duration))
    return out


def apply_to_hcm(hcm: hcm_pb2.HttpConnectionManager, conf: MeshTimeoutConf | None) -> None:
    if conf is None:
        return
    if conf.idle_timeout:
        hcm.common_http_protocol_options.idle_timeout.CopyFrom(duration(conf.idle_timeout))
    http = conf.http
    if http and http.stream_idle_timeout:
        hcm.stream_idle_timeout.CopyFrom(duration(http.stream_idle_timeout))
    if http and http.request_headers_timeout:
        hcm.request_headers_timeout.CopyFrom(duration(http.request_headers_timeout))


def apply_to_route(action: route_components_pb2.RouteAction,
                   conf: MeshTimeoutConf | None) -> None:
    http = conf.http if conf else None
    if http and http.request_timeout:
        action.timeout.CopyFrom(duration(http.request_timeout))
    if http and http.max_stream_duration:
        action.max_stream_duration.max_stream_duration.CopyFrom(
            duration(http.max_stream_duration))


def apply_to_tcp_proxy(proxy: tcp_proxy_pb2.TcpProxy, conf: MeshTimeoutConf | None) -> None:
    if conf and conf.idle_timeout:
        proxy.idle_timeout.CopyFrom(duration(conf.idle_timeout))
