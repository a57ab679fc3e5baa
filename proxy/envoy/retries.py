"""MeshRetry → Envoy retry policies (HTTP and gRPC) and TCP connect attempts.

HTTP and gRPC use the route's ``retry_policy``: ``retryOn`` conditions become
``retry_on`` (quoted status codes go to ``retriable_status_codes`` and add
``retriable-status-codes``; HTTP methods become ``retriable_request_headers`` on
``:method``), with ``num_retries``, ``per_try_timeout``, ``retry_back_off``,
``rate_limited_retry_back_off``, ``retriable_headers``, the host predicates
(``envoy.retry_host_predicates.previous_hosts`` / ``omit_host_metadata``), the priority
predicate (``envoy.retry_priorities.previous_priorities``) and
``host_selection_retry_max_attempts``. A gRPC destination takes the ``grpc`` section,
any other HTTP destination the ``http`` section.

TCP has no requests to replay: ``tcp.maxConnectAttempt`` becomes the TCP proxy's
``max_connect_attempts``, so a failed connect is retried (on another host when there is
one) before the downstream connection is given up.
"""

from __future__ import annotations

from typing import TypeAlias

from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.retry.host.omit_host_metadata.v3 import omit_host_metadata_config_pb2
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2
from envoy.extensions.retry.priority.previous_priorities.v3 import (
    previous_priorities_config_pb2,
)
from google.protobuf import struct_pb2

from gossamer.model.meshretry import (
    GrpcRetry,
    GrpcRetryOn,
    HostSelection,
    HostSelectionPredicate,
    HttpRetry,
    MeshRetryConf,
    RateLimitedBackOff,
    ResetHeaderFormat,
)
from gossamer.model.policy_fields import HttpMethod
from proxy.envoy.headers import header_matcher
from proxy.envoy.protos import duration, exact, pack, u32

_Policy: TypeAlias = route_components_pb2.RetryPolicy

DEFAULT_HTTP_RETRY_ON = ("5xx", "gateway-error", "reset", "retriable-4xx", "connect-failure",
                         "envoy-ratelimited", "refused-stream")
# Envoy spells the gRPC status "cancelled".
_GRPC_CONDITIONS = {GrpcRetryOn.CANCELED: "cancelled",
                    GrpcRetryOn.DEADLINE_EXCEEDED: "deadline-exceeded",
                    GrpcRetryOn.INTERNAL: "internal",
                    GrpcRetryOn.RESOURCE_EXHAUSTED: "resource-exhausted",
                    GrpcRetryOn.UNAVAILABLE: "unavailable"}
_METHODS = frozenset(m.value for m in HttpMethod)
_RESET_FORMATS = {ResetHeaderFormat.SECONDS: _Policy.SECONDS,
                  ResetHeaderFormat.UNIX_TIMESTAMP: _Policy.UNIX_TIMESTAMP}


def retry_policy(conf: MeshRetryConf | None, protocol: str) -> _Policy | None:
    """The route retry policy for a destination speaking ``protocol``, if configured."""
    if conf is None:
        return None
    if protocol == "grpc":
        return _grpc(conf.grpc) if conf.grpc else None
    return _http(conf.http) if conf.http else None


def _common(policy: _Policy, conf: HttpRetry | GrpcRetry) -> None:
    if conf.num_retries is not None:
        policy.num_retries.CopyFrom(u32(conf.num_retries))
    if conf.per_try_timeout:
        policy.per_try_timeout.CopyFrom(duration(conf.per_try_timeout))
    if conf.back_off and conf.back_off.base_interval:
        policy.retry_back_off.base_interval.CopyFrom(duration(conf.back_off.base_interval))
        if conf.back_off.max_interval:
            policy.retry_back_off.max_interval.CopyFrom(duration(conf.back_off.max_interval))
    if conf.rate_limited_back_off:
        policy.rate_limited_retry_back_off.CopyFrom(_rate_limited(conf.rate_limited_back_off))


def _rate_limited(
        conf: RateLimitedBackOff) -> route_components_pb2.RetryPolicy.RateLimitedRetryBackOff:
    out = _Policy.RateLimitedRetryBackOff(reset_headers=[
        _Policy.ResetHeader(name=h.name, format=_RESET_FORMATS[h.format])
        for h in conf.reset_headers])
    if conf.max_interval:
        out.max_interval.CopyFrom(duration(conf.max_interval))
    return out


def _http(conf: HttpRetry) -> _Policy:
    given = list(conf.retry_on or DEFAULT_HTTP_RETRY_ON)
    statuses = [int(c) for c in given if c.isdigit()]
    methods = [c for c in given if c in _METHODS]
    conditions = [c for c in given if not c.isdigit() and c not in _METHODS]
    if statuses and "retriable-status-codes" not in conditions:
        conditions.append("retriable-status-codes")
    policy = _Policy(retry_on=",".join(conditions), retriable_status_codes=statuses)
    _common(policy, conf)
    policy.retriable_headers.extend(header_matcher(h) for h in conf.retriable_response_headers
                                    or [])
    policy.retriable_request_headers.extend(header_matcher(h)
                                            for h in conf.retriable_request_headers or [])
    policy.retriable_request_headers.extend(
        route_components_pb2.HeaderMatcher(name=":method", string_match=exact(m))
        for m in methods)
    for selection in conf.host_selection or []:
        _host_selection(policy, selection)
    if conf.host_selection_max_attempts is not None:
        policy.host_selection_retry_max_attempts = conf.host_selection_max_attempts
    return policy


def _host_selection(policy: _Policy, selection: HostSelection) -> None:
    kind = selection.predicate
    if kind is HostSelectionPredicate.OMIT_PREVIOUS_HOSTS:
        policy.retry_host_predicate.add(name="envoy.retry_host_predicates.previous_hosts",
                                        typed_config=pack(previous_hosts_pb2.PreviousHostsPredicate()))
    elif kind is HostSelectionPredicate.OMIT_HOST_METADATA:
        # Endpoints carry their tags as ``envoy.lb`` metadata (see ``endpoints``).
        tags = struct_pb2.Struct()
        tags.update(selection.tags or {})
        config = omit_host_metadata_config_pb2.OmitHostMetadataConfig()
        config.metadata_match.filter_metadata["envoy.lb"].CopyFrom(tags)
        policy.retry_host_predicate.add(name="envoy.retry_host_predicates.omit_host_metadata",
                                        typed_config=pack(config))
    else:
        config_p = previous_priorities_config_pb2.PreviousPrioritiesConfig(
            update_frequency=selection.update_frequency or 2)
        policy.retry_priority.name = "envoy.retry_priorities.previous_priorities"
        policy.retry_priority.typed_config.CopyFrom(pack(config_p))


def _grpc(conf: GrpcRetry) -> _Policy:
    conditions = [_GRPC_CONDITIONS[c] for c in conf.retry_on or list(GrpcRetryOn)]
    policy = _Policy(retry_on=",".join(conditions))
    _common(policy, conf)
    return policy


def apply_to_tcp_proxy(proxy: tcp_proxy_pb2.TcpProxy, conf: MeshRetryConf | None) -> None:
    if conf and conf.tcp:
        proxy.max_connect_attempts.CopyFrom(u32(conf.tcp.max_connect_attempt))
