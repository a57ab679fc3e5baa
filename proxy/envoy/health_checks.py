"""MeshHealthCheck → a cluster's active ``health_checks`` and its panic settings.

One checker per cluster, picked in the model's order among the configured, enabled ones
the destination's protocol allows: ``http`` (HTTP and HTTP/2 destinations; Envoy's
``http_health_check``, HTTP/2 codec for http2), ``tcp`` (any destination;
``tcp_health_check`` with optional send/receive payloads), ``grpc`` (gRPC destinations;
``grpc_health_check``). With none of them configured (or none allowed) a plain TCP
connect check runs, unless ``tcp.disabled`` is set, in which case no check is generated.
Checks travel through the cluster's transport socket, so they are mTLS to the peer
sidecar, which forwards them to the application like any request.

Shared settings map one to one (``interval``, ``timeout``, thresholds, jitters,
``no_traffic_interval``, ``reuse_connection``, ``always_log_health_check_failures``);
``eventLogPath`` becomes an ``envoy.health_check.event_sinks.file`` event logger, and
``healthyPanicThreshold``/``failTrafficOnPanic`` go to the cluster's ``common_lb_config``.
Unset interval, timeout and thresholds take Kuma's defaults (1m, 15s, 5 unhealthy,
1 healthy), since Envoy requires them.
"""

from __future__ import annotations

import base64
from typing import TypeAlias

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import health_check_pb2
from envoy.extensions.health_check.event_sinks.file.v3 import file_pb2
from envoy.type.v3 import http_pb2, range_pb2

from gossamer.model.meshhealthcheck import (
    GrpcHealthCheck,
    HttpHealthCheck,
    MeshHealthCheckConf,
    TcpHealthCheck,
)
from proxy.envoy.headers import header_options
from proxy.envoy.protos import boolean, duration, percent, typed_extension, u32

_HC: TypeAlias = health_check_pb2.HealthCheck
DEFAULT_INTERVAL = "1m"
DEFAULT_TIMEOUT = "15s"
DEFAULT_UNHEALTHY = 5
DEFAULT_HEALTHY = 1
HTTP_PROTOCOLS = frozenset({"http", "http2"})


def health_check(conf: MeshHealthCheckConf | None, protocol: str) -> _HC | None:
    if conf is None:
        return None
    out = _HC(
        interval=duration(conf.interval or DEFAULT_INTERVAL),
        timeout=duration(conf.timeout or DEFAULT_TIMEOUT),
        unhealthy_threshold=u32(conf.unhealthy_threshold or DEFAULT_UNHEALTHY),
        healthy_threshold=u32(conf.healthy_threshold or DEFAULT_HEALTHY))
    if not _checker(out, conf, protocol):
        return None
    if conf.initial_jitter:
        out.initial_jitter.CopyFrom(duration(conf.initial_jitter))
    if conf.interval_jitter:
        out.interval_jitter.CopyFrom(duration(conf.interval_jitter))
    if conf.interval_jitter_percent is not None:
        out.interval_jitter_percent = conf.interval_jitter_percent
    if conf.no_traffic_interval:
        out.no_traffic_interval.CopyFrom(duration(conf.no_traffic_interval))
    if conf.reuse_connection is not None:
        out.reuse_connection.CopyFrom(boolean(conf.reuse_connection))
    if conf.always_log_health_check_failures is not None:
        out.always_log_health_check_failures = conf.always_log_health_check_failures
    if conf.event_log_path:
        out.event_logger.append(typed_extension(
            "envoy.health_check.event_sinks.file",
            file_pb2.HealthCheckEventFileSink(event_log_path=conf.event_log_path)))
    return out


def _enabled(section: HttpHealthCheck | TcpHealthCheck | GrpcHealthCheck | None) -> bool:
    return section is not None and not section.disabled


def _checker(out: _HC, conf: MeshHealthCheckConf, protocol: str) -> bool:
    if conf.http is not None and _enabled(conf.http) and protocol in HTTP_PROTOCOLS:
        out.http_health_check.CopyFrom(_http(conf.http, protocol))
    elif conf.tcp is not None and _enabled(conf.tcp):
        out.tcp_health_check.CopyFrom(_tcp(conf.tcp))
    elif conf.grpc is not None and _enabled(conf.grpc) and protocol == "grpc":
        out.grpc_health_check.CopyFrom(_HC.GrpcHealthCheck(
            service_name=conf.grpc.service_name or "", authority=conf.grpc.authority or ""))
    elif conf.tcp is None or not conf.tcp.disabled:
        out.tcp_health_check.CopyFrom(_HC.TcpHealthCheck())
    else:
        return False
    return True


def _http(conf: HttpHealthCheck, protocol: str) -> health_check_pb2.HealthCheck.HttpHealthCheck:
    out = _HC.HttpHealthCheck(
        path=conf.path or "/",
        request_headers_to_add=header_options(conf.request_headers_to_add),
        expected_statuses=[range_pb2.Int64Range(start=s, end=s + 1)
                           for s in conf.expected_statuses or []])
    if protocol == "http2":
        out.codec_client_type = http_pb2.HTTP2
    return out


def _tcp(conf: TcpHealthCheck) -> health_check_pb2.HealthCheck.TcpHealthCheck:
    out = _HC.TcpHealthCheck()
    if conf.send:
        out.send.binary = base64.b64decode(conf.send)
    out.receive.extend(_HC.Payload(binary=base64.b64decode(r)) for r in conf.receive or [])
    return out


def apply_to_cluster(cluster: cluster_pb2.Cluster, conf: MeshHealthCheckConf | None,
                     protocol: str) -> None:
    check = health_check(conf, protocol)
    if check is not None:
        cluster.health_checks.append(check)
    if conf is None:
        return
    if conf.healthy_panic_threshold is not None:
        cluster.common_lb_config.healthy_panic_threshold.CopyFrom(
            percent(conf.healthy_panic_threshold))
    if conf.fail_traffic_on_panic is not None:
        cluster.common_lb_config.zone_aware_lb_config.fail_traffic_on_panic = (
            conf.fail_traffic_on_panic)
