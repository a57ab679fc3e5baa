"""Which Envoy stats a mesh proxy keeps: the bootstrap's ``stats_config.stats_matcher``.

Envoy creates every stat of every cluster and listener up front, about 110 per cluster
and 100 per HTTP listener; a sidecar that can call a thousand services has a thousand
clusters and two thousand listeners, 275,000 stats and about 65 MB of private memory.
A stat an inclusion list rejects is never allocated. This module says, once, which
stats the mesh reads, so that the sidecar's and the ingress's bootstraps keep exactly
those and the tests can check the list against a real Envoy.

Theory of operation. The bootstrap is written when the agent starts, while the
MeshMetric that selects the proxy can change at any time, and Envoy cannot change its
matcher without a restart. So the matcher does not follow the policy: it keeps every
family any MeshMetric profile, ``gossamer inspect --stats``, the control plane and the
agent read, and the profiles serve from what it keeps (``All`` is "every stat the mesh
keeps"; ``None`` with ``include`` selectors picks among them). A MeshMetric change
never needs a restart, and every stat a profile can name exists. What is left out is
what no part of the mesh reads and what says nothing about the mesh's traffic:

* per cluster: config-update and EDS bookkeeping (``update_*``, ``assignment_*``,
  ``version``, ``warming_state``), the load balancer's subset and zone-routing
  counters (the mesh routes localities by priority, not by Envoy's zone routing),
  flow-control, internal-redirect, HTTP/3 and original-destination counters,
  ``bind_errors``, ``max_host_weight``, ``retry_or_shadow_abandoned`` and the matcher
  count ``default.total_match_count``;
* per listener, HTTP connection manager and TCP proxy (a sidecar has one or two per
  service it can call, and up to ~100 stats each): per-worker copies, HTTP/1-2-3 and TLS
  splits of the connection counts, buffered-byte gauges, flow control, upgrades, path
  normalisation, redirects, flushes, early data and the listener-filter and
  extension-config bookkeeping; per cluster, the high-priority circuit breakers and the
  OCSP and certificate-hash TLS counters (the mesh uses neither);
* process internals: ``runtime.*``, ``filesystem.*``, the watchdogs (``main_thread.*``,
  ``workers.*``) and ``thread_local_cluster_manager.*``.

Kept whole: ``server.*``, ``control_plane.*``, the managers, ``sds.*``,
``overload.*``, the admin's listener and connection manager, and the network filters'
own roots (``<listener>.rbac.*``, ``<listener>_rate_limit.*``). Per cluster: requests,
connections, membership, circuit breakers, outlier detection, health checks, TLS (with
the SDS secret's readiness and updates, which a certificate rotation shows in) and its
HTTP/1 and HTTP/2 codec errors. Per listener, connection manager and TCP proxy:
connections, bytes and their rejections, TLS, requests by status class and their time,
resets, timeouts, overload refusals, routing misses, and the HTTP filters' stats (RBAC,
faults, rate limits, tracing, RDS). ``tests/integration/test_envoy_stats_matcher.py`` runs the
generated configs in a real Envoy with and without the matcher and checks that the
stats dropped are exactly these.
"""

from __future__ import annotations

import re
from typing import Any

# Whole families, by the first component of the stat name.
KEPT_ROOTS = ("server", "control_plane", "cluster_manager", "listener_manager", "http1",
              "http2", "sds", "ssl", "overload", "envoy", "vhost", "tracing",
              "listener.admin", "http.admin")
# Per cluster (``cluster.<name>.<stat>``, where the name may hold dots): the stats kept.
# (Its TLS without OCSP stapling and certificate-hash pinning, which the mesh never
# uses; circuit breakers of the default priority, the only one its routes use.)
CLUSTER_STATS = ("upstream_rq_", "upstream_cx_", "membership_", "circuit_breakers.default.",
                 "outlier_detection.", "health_check.", "lb_healthy_panic", "ssl.handshake",
                 "ssl.connection_error", "ssl.session_reused", "ssl.no_certificate",
                 "ssl.fail_verify_san", "ssl.fail_verify_no_cert", "ssl.fail_verify_error",
                 "ssl.certificate.", "ssl.versions.", "ssl.ciphers.", "ssl.curves.",
                 "ssl.sigalgs.",
                 "internal.upstream_rq_", "external.upstream_rq_", "retry.", "canary.",
                 "client_ssl_socket_factory.", "http1.", "http2.", "upstream_queue_overloaded")
# Per listener (``listener.<stat prefix>.<stat>``; the address ``1.2.3.4_80`` for one
# without a prefix; not the per-worker copies): connections, their rejections (the
# overload manager's and the connection limit's included), TLS, and the per-listener
# HTTP status counts.
LISTENER_STATS = ("downstream_cx_active", "downstream_cx_total", "downstream_cx_destroy",
                  "downstream_cx_length_ms", "downstream_cx_overflow",
                  "downstream_cx_overload_reject", "downstream_global_cx_overflow",
                  "downstream_cx_transport_socket_connect_timeout", "downstream_pre_cx_timeout",
                  "downstream_listener_filter_error", "no_filter_chain_match", "ssl.",
                  "server_ssl_socket_factory.", "http.")
# Per HTTP connection manager (``http.<prefix>.<stat>``): requests by status class and
# their time, connections, resets, timeouts, overload refusals, routing misses, and the
# HTTP filters' own stats (RBAC, faults, rate limits, tracing, RDS).
HTTP_STATS = ("downstream_rq_1xx", "downstream_rq_2xx", "downstream_rq_3xx",
              "downstream_rq_4xx", "downstream_rq_5xx", "downstream_rq_total",
              "downstream_rq_active", "downstream_rq_completed", "downstream_rq_time",
              "downstream_rq_timeout", "downstream_rq_header_timeout",
              "downstream_rq_idle_timeout", "downstream_rq_max_duration_reached",
              "downstream_rq_rx_reset", "downstream_rq_tx_reset", "downstream_rq_too_large",
              "downstream_rq_overload_close", "downstream_cx_active", "downstream_cx_total",
              "downstream_cx_destroy", "downstream_cx_length_ms",
              "downstream_cx_protocol_error", "downstream_cx_idle_timeout",
              "downstream_cx_rx_bytes_total", "downstream_cx_tx_bytes_total", "no_route",
              "no_cluster", "rq_direct_response", "rq_total", "rs_too_large",
              "rq_overload_local_reply", "tracing.", "rbac.", "shadow_", "fault.", "rds.",
              "http_local_rate_limit.")
# Per TCP proxy (``tcp.<prefix>.<stat>``): connections, bytes, routing misses, timeouts
# and overload closes.
TCP_STATS = ("downstream_cx_total", "downstream_cx_no_route", "downstream_cx_rx_bytes_total",
             "downstream_cx_tx_bytes_total", "downstream_cx_overload_close", "idle_timeout",
             "max_downstream_connection_duration")
# Network filters that root their stats at their own stat prefix (the listener's):
# RBAC (``<prefix>.rbac.allowed``, ``<prefix>.rbac.shadow_denied``) and local rate
# limits (``<prefix>_rate_limit...``, ``proxy.envoy.rate_limits``).
FILTER_ROOTS = (r"[^.]+\.rbac\.", r"[^.]+_rate_limit[._]", r"local_rate_limit\.")


def _alternatives(words: tuple[str, ...]) -> str:
    return "|".join(re.escape(w) for w in words)


# Envoy matches a ``safe_regex`` against the whole name (RE2 full match), hence ``.*``.
KEPT_PATTERNS = (
    rf"(?:{_alternatives(KEPT_ROOTS)})\..*",
    rf"cluster\..+\.(?:{_alternatives(CLUSTER_STATS)}).*",
    rf"listener\.(?:[^.]+|[0-9.]+_[0-9]+)\.(?:{_alternatives(LISTENER_STATS)}).*",
    rf"http\.[^.]+\.(?:{_alternatives(HTTP_STATS)}|[^.]+_rate_limit\.).*",
    rf"tcp\.[^.]+\.(?:{_alternatives(TCP_STATS)}).*",
    rf"(?:{'|'.join(FILTER_ROOTS)}).*",
)
_KEPT = re.compile("|".join(f"(?:{p})" for p in KEPT_PATTERNS))


def kept(stat: str) -> bool:
    """Whether Envoy keeps ``stat`` under ``stats_matcher()`` (the same regexes, matched
    against the whole name as Envoy does)."""
    return _KEPT.fullmatch(stat) is not None


def stats_matcher() -> dict[str, Any]:
    """The bootstrap's ``stats_matcher``: an inclusion list of RE2 regexes (each one is
    also valid Python ``re``, which ``kept`` uses)."""
    return {"inclusion_list": {"patterns": [{"safe_regex": {"regex": p}}
                                            for p in KEPT_PATTERNS]}}
