"""MeshFaultInjection → ``envoy.filters.http.fault`` HTTP filters.

Each ``http[]`` item becomes one fault filter, placed before the router: ``abort``
answers ``httpStatus`` for its percentage of requests, ``delay`` holds requests for a
fixed time (``fixed_delay``) for its percentage, ``responseBandwidth`` throttles response
bodies (``response_rate_limit``, in KiB/s rounded up) for its percentage. Percentages are
parts per million. Items are independent filters, so their percentages compound.
``to[]`` confs go on the destination's outbound listener, ``from[]`` (Mesh-wide) confs on
the inbound listener. gRPC destinations get the same HTTP status aborts (Envoy maps them
to gRPC statuses for gRPC clients).
"""

from __future__ import annotations

import math

from envoy.extensions.filters.common.fault.v3 import fault_pb2 as common_fault_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from gossamer.model.meshfaultinjection import HttpFault, MeshFaultInjectionConf
from proxy.envoy import filters
from proxy.envoy.protos import duration, fractional

HTTP_FILTER = "envoy.filters.http.fault"
_KBPS = {"bps": 1 / 1000, "kbps": 1, "Mbps": 1000, "Gbps": 1_000_000}


def _kbps(limit: str) -> int:
    for unit in sorted(_KBPS, key=len, reverse=True):
        if limit.endswith(unit):
            return max(1, math.ceil(int(limit[: -len(unit)]) * _KBPS[unit]))
    raise ValueError(f"bad bandwidth {limit!r}")  # the model validated it


def _fault(item: HttpFault) -> fault_pb2.HTTPFault:
    out = fault_pb2.HTTPFault()
    if item.abort:
        out.abort.http_status = item.abort.http_status
        out.abort.percentage.CopyFrom(fractional(item.abort.percentage))
    if item.delay:
        out.delay.fixed_delay.CopyFrom(duration(item.delay.value))
        out.delay.percentage.CopyFrom(fractional(item.delay.percentage))
    if item.response_bandwidth:
        out.response_rate_limit.CopyFrom(common_fault_pb2.FaultRateLimit(
            fixed_limit=common_fault_pb2.FaultRateLimit.FixedLimit(
                limit_kbps=_kbps(item.response_bandwidth.limit)),
            percentage=fractional(item.response_bandwidth.percentage)))
    return out


def http_filters(conf: MeshFaultInjectionConf | None) -> list[hcm_pb2.HttpFilter]:
    if conf is None:
        return []
    return [filters.http(f"{HTTP_FILTER}.{i}", _fault(item)) for i, item in enumerate(conf.http)]
