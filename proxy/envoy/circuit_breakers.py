"""MeshCircuitBreaker → a cluster's ``circuit_breakers`` thresholds and
``outlier_detection``.

``connectionLimits`` fills the DEFAULT-priority ``Thresholds`` (``max_connections``,
``max_pending_requests``, ``max_requests``, ``max_retries``, ``max_connection_pools``);
when a limit is reached Envoy fails fast (503, ``upstream_rq_pending_overflow``) instead of
queueing. ``outlierDetection`` becomes ``outlier_detection``; only the detectors a policy
lists eject hosts: each listed detector is enforced at 100% and every other one at 0%
(Envoy's own defaults would silently enforce consecutive 5xx and success rate).

| detector             | Envoy                                                       |
|----------------------|-------------------------------------------------------------|
| totalFailures        | ``consecutive_5xx``                                         |
| gatewayFailures      | ``consecutive_gateway_failure``                             |
| localOriginFailures  | ``consecutive_local_origin_failure``                        |
| successRate          | ``success_rate_*`` (stdev factor * 1000)                    |
| failurePercentage    | ``failure_percentage_*``                                    |

Outbound clusters take the destination's ``to[]`` conf; the local application cluster
of an inbound takes the inbound's connection limits (outlier detection has one host
there, nothing to compare it with, so it is not applied).
"""

from __future__ import annotations

from decimal import Decimal

from envoy.config.cluster.v3 import circuit_breaker_pb2, outlier_detection_pb2

from gossamer.model.meshcircuitbreaker import ConnectionLimits, OutlierDetection
from proxy.envoy.protos import duration, u32

_LIMITS = ("max_connections", "max_pending_requests", "max_requests", "max_retries")


def circuit_breakers(limits: ConnectionLimits | None) -> circuit_breaker_pb2.CircuitBreakers | None:
    if limits is None:
        return None
    thresholds = circuit_breaker_pb2.CircuitBreakers.Thresholds()  # priority DEFAULT
    for name in _LIMITS:
        value = getattr(limits, name)
        if value is not None:
            getattr(thresholds, name).CopyFrom(u32(value))
    if limits.max_connection_pools is not None:
        thresholds.max_connection_pools.CopyFrom(u32(limits.max_connection_pools))
    return circuit_breaker_pb2.CircuitBreakers(thresholds=[thresholds])


def outlier_detection(conf: OutlierDetection | None
                      ) -> outlier_detection_pb2.OutlierDetection | None:
    if conf is None or conf.disabled:
        return None
    out = outlier_detection_pb2.OutlierDetection()
    if conf.interval:
        out.interval.CopyFrom(duration(conf.interval))
    if conf.base_ejection_time:
        out.base_ejection_time.CopyFrom(duration(conf.base_ejection_time))
    if conf.max_ejection_percent is not None:
        out.max_ejection_percent.CopyFrom(u32(conf.max_ejection_percent))
    if conf.split_external_and_local_errors is not None:
        out.split_external_local_origin_errors = conf.split_external_and_local_errors
    _detectors(out, conf)
    return out


def _detectors(out: outlier_detection_pb2.OutlierDetection, conf: OutlierDetection) -> None:
    d = conf.detectors
    total = d.total_failures if d else None
    gateway = d.gateway_failures if d else None
    local = d.local_origin_failures if d else None
    rate = d.success_rate if d else None
    pct = d.failure_percentage if d else None
    out.enforcing_consecutive_5xx.CopyFrom(u32(100 if total else 0))
    out.enforcing_consecutive_gateway_failure.CopyFrom(u32(100 if gateway else 0))
    out.enforcing_consecutive_local_origin_failure.CopyFrom(u32(100 if local else 0))
    out.enforcing_success_rate.CopyFrom(u32(100 if rate else 0))
    out.enforcing_local_origin_success_rate.CopyFrom(
        u32(100 if rate and conf.split_external_and_local_errors else 0))
    out.enforcing_failure_percentage.CopyFrom(u32(100 if pct else 0))
    out.enforcing_failure_percentage_local_origin.CopyFrom(
        u32(100 if pct and conf.split_external_and_local_errors else 0))
    if total:
        out.consecutive_5xx.CopyFrom(u32(total.consecutive))
    if gateway:
        out.consecutive_gateway_failure.CopyFrom(u32(gateway.consecutive))
    if local:
        out.consecutive_local_origin_failure.CopyFrom(u32(local.consecutive))
    if rate:
        if rate.minimum_hosts is not None:
            out.success_rate_minimum_hosts.CopyFrom(u32(rate.minimum_hosts))
        if rate.request_volume is not None:
            out.success_rate_request_volume.CopyFrom(u32(rate.request_volume))
        if rate.standard_deviation_factor is not None:
            factor = Decimal(str(rate.standard_deviation_factor)) * 1000
            out.success_rate_stdev_factor.CopyFrom(u32(int(factor)))
    if pct:
        if pct.threshold is not None:
            out.failure_percentage_threshold.CopyFrom(u32(pct.threshold))
        if pct.minimum_hosts is not None:
            out.failure_percentage_minimum_hosts.CopyFrom(u32(pct.minimum_hosts))
        if pct.request_volume is not None:
            out.failure_percentage_request_volume.CopyFrom(u32(pct.request_volume))

