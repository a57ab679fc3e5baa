"""MeshRateLimit → Envoy's local rate limit filters on inbound listeners.

``local.http`` becomes an ``envoy.filters.http.local_ratelimit`` HTTP filter: a token
bucket of ``requestRate.num`` tokens refilled to full every ``requestRate.interval``,
enabled and enforced for 100% of requests; an empty bucket answers
``onRateLimit.status`` (default 429) with ``onRateLimit.headers`` added.
``local.tcp`` becomes an ``envoy.filters.network.local_ratelimit`` network filter, first
on the inbound listener's chain (HTTP or TCP): a bucket of ``connectionRate.num``
connections per ``interval``; a connection over the limit is closed at once. Either
section with ``disabled: true`` adds nothing. The bucket is per proxy (shared by its
workers): N instances admit N times the rate.
"""

from __future__ import annotations

from envoy.config.listener.v3 import listener_components_pb2
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2 as http_rl_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.local_ratelimit.v3 import (
    local_rate_limit_pb2 as tcp_rl_pb2,
)
from envoy.type.v3 import http_status_pb2, token_bucket_pb2

from gossamer.model.meshratelimit import MeshRateLimitConf, Rate
from proxy.envoy import filters
from proxy.envoy.headers import header_options
from proxy.envoy.protos import duration, runtime_fraction, u32

HTTP_FILTER = "envoy.filters.http.local_ratelimit"
NETWORK_FILTER = "envoy.filters.network.local_ratelimit"
DEFAULT_STATUS = 429


def _bucket(rate: Rate) -> token_bucket_pb2.TokenBucket:
    return token_bucket_pb2.TokenBucket(max_tokens=rate.num, tokens_per_fill=u32(rate.num),
                                        fill_interval=duration(rate.interval))


def http_filter(conf: MeshRateLimitConf | None, stat_prefix: str) -> hcm_pb2.HttpFilter | None:
    http = conf.local.http if conf else None
    if http is None or http.disabled or http.request_rate is None:
        return None
    on_limit = http.on_rate_limit
    status = on_limit.status if on_limit and on_limit.status else DEFAULT_STATUS
    config = http_rl_pb2.LocalRateLimit(
        stat_prefix=f"{stat_prefix}_rate_limit",
        token_bucket=_bucket(http.request_rate),
        status=http_status_pb2.HttpStatus(code=status),
        filter_enabled=runtime_fraction(100, "local_rate_limit_enabled"),
        filter_enforced=runtime_fraction(100, "local_rate_limit_enforced"),
        response_headers_to_add=header_options(on_limit.headers if on_limit else None))
    return filters.http(HTTP_FILTER, config)


def network_filter(conf: MeshRateLimitConf | None, stat_prefix: str
                   ) -> listener_components_pb2.Filter | None:
    tcp = conf.local.tcp if conf else None
    if tcp is None or tcp.disabled or tcp.connection_rate is None:
        return None
    return filters.network(NETWORK_FILTER, tcp_rl_pb2.LocalRateLimit(
        stat_prefix=f"{stat_prefix}_rate_limit", token_bucket=_bucket(tcp.connection_rate)))
