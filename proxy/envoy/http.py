"""The HTTP connection manager shared by inbound, outbound and metrics listeners.

Routes come by RDS over ADS (``rds.route_config_name``), so a route change never
rebuilds a listener. The HTTP filter chain is the caller's filters in order (RBAC, rate
limit, faults…) and the router last.

``x-forwarded-client-cert`` keeps Envoy's default, ``SANITIZE``: a header a client sends
is dropped, so an application never sees a forged caller identity, and none is set. The
caller's identity is enforced by RBAC on the inbound; writing it into every request
(``SANITIZE_SET`` with the peer's URI SANs, as an earlier version did) cost a sidecar
pair 3-15 % more CPU per request, and was the part of the gap to a hand-written Envoy
pair that nothing required (``tests/bench/bench_dataplane.py``, ``docs/benchmarks.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.listener.v3 import listener_components_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from gossamer.model.meshtimeout import MeshTimeoutConf
from proxy.envoy import filters, timeouts
from proxy.envoy.protos import ads

HCM = "envoy.filters.network.http_connection_manager"
ROUTER = "envoy.filters.http.router"
_HCM: TypeAlias = hcm_pb2.HttpConnectionManager


@dataclass
class HttpSettings:
    """What one connection manager is made of besides its route configuration."""

    stat_prefix: str
    route_name: str
    http_filters: Sequence[hcm_pb2.HttpFilter] = ()
    timeout: MeshTimeoutConf | None = None
    access_logs: Sequence[accesslog_pb2.AccessLog] = ()
    tracing: hcm_pb2.HttpConnectionManager.Tracing | None = None


def connection_manager(settings: HttpSettings) -> listener_components_pb2.Filter:
    hcm = _HCM(codec_type=_HCM.AUTO, stat_prefix=settings.stat_prefix,
               access_log=list(settings.access_logs))
    hcm.rds.config_source.CopyFrom(ads())
    hcm.rds.route_config_name = settings.route_name
    hcm.http_filters.extend(settings.http_filters)
    hcm.http_filters.append(filters.http(ROUTER, router_pb2.Router()))
    if settings.tracing is not None:
        hcm.tracing.CopyFrom(settings.tracing)
    timeouts.apply_to_hcm(hcm, settings.timeout)
    return filters.network(HCM, hcm)
