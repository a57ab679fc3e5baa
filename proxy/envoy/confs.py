"""The policy confs one generator needs, pulled out of ``ProxyPolicies``.

``outbound`` and ``inbound`` return the merged conf model of one kind for a destination
or an inbound (or None). Inbound confs other than permissions come from ``rules[]``, or,
without rules, from the ``from[]`` rule that covers every source (a ``Mesh`` targetRef):
a timeout, a rate limit or a fault filter sits on the listener and cannot tell callers
apart, so source-specific ``from[]`` items of those kinds are not translated.

``ClusterConfs`` bundles the confs an outbound cluster depends on. Pydantic models with
lists or tag maps do not hash, so a bundle hashes and compares by the canonical JSON of
its confs: two proxies with equal confs share one cached cluster.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from pydantic import BaseModel

from gossamer.model.dataplane import Inbound
from gossamer.model.meshcircuitbreaker import MeshCircuitBreakerConf
from gossamer.model.meshhealthcheck import MeshHealthCheckConf
from gossamer.model.meshloadbalancingstrategy import MeshLoadBalancingStrategyConf
from gossamer.model.meshtimeout import MeshTimeoutConf
from gossamer.policy import MergedConf, ProxyPolicies

M = TypeVar("M", bound=BaseModel)

TIMEOUT = "MeshTimeout"
RETRY = "MeshRetry"
CIRCUIT_BREAKER = "MeshCircuitBreaker"
HEALTH_CHECK = "MeshHealthCheck"
LOAD_BALANCING = "MeshLoadBalancingStrategy"
HTTP_ROUTE = "MeshHTTPRoute"
TCP_ROUTE = "MeshTCPRoute"
RATE_LIMIT = "MeshRateLimit"
FAULT_INJECTION = "MeshFaultInjection"
ACCESS_LOG = "MeshAccessLog"
TRACE = "MeshTrace"
METRIC = "MeshMetric"
PASSTHROUGH = "MeshPassthrough"
TRAFFIC_PERMISSION = "MeshTrafficPermission"


def _model(merged: MergedConf | None, model: type[M]) -> M | None:
    if merged is None or not isinstance(merged.conf, model):
        return None
    return merged.conf


def outbound(policies: ProxyPolicies, kind: str, model: type[M], service: str) -> M | None:
    """The merged ``to[]`` conf of ``kind`` for traffic to ``service``."""
    return _model(policies.kind(kind).outbound(service), model)


def outbound_rules(policies: ProxyPolicies, kind: str, service: str) -> tuple[Any, ...]:
    """A route kind's winning rules for ``service`` (empty when no route applies)."""
    merged = policies.kind(kind).outbound(service)
    return merged.conf if merged is not None and isinstance(merged.conf, tuple) else ()


def inbound(policies: ProxyPolicies, kind: str, model: type[M], ib: Inbound) -> M | None:
    """The conf of ``kind`` for all traffic into ``ib``: ``rules[]``, else ``from: Mesh``."""
    conf = policies.kind(kind).inbound(ib.port, ib.address)
    if conf.rules is not None:
        return _model(conf.rules, model)
    return _model(conf.for_source({}), model)


def proxy(policies: ProxyPolicies, kind: str, model: type[M]) -> M | None:
    """The proxy-wide ``default`` of ``MeshTrace``/``MeshMetric``/``MeshPassthrough``."""
    return _model(policies.kind(kind).proxy, model)


def canonical(conf: BaseModel | None) -> str:
    if conf is None:
        return ""
    return json.dumps(conf.model_dump(mode="json", by_alias=True, exclude_none=True),
                      sort_keys=True)


@dataclass(frozen=True, eq=False)
class ClusterConfs:
    """The confs an outbound cluster is made from; hashable by canonical JSON."""

    timeout: MeshTimeoutConf | None = None
    circuit_breaker: MeshCircuitBreakerConf | None = None
    health_check: MeshHealthCheckConf | None = None
    load_balancing: MeshLoadBalancingStrategyConf | None = None
    _key: tuple[str, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        key = tuple(canonical(getattr(self, f.name)) for f in fields(self) if f.name != "_key")
        object.__setattr__(self, "_key", key)

    def __hash__(self) -> int:
        return hash(self._key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ClusterConfs) and other._key == self._key

    @classmethod
    def of(cls, policies: ProxyPolicies, service: str) -> ClusterConfs:
        return cls(
            timeout=outbound(policies, TIMEOUT, MeshTimeoutConf, service),
            circuit_breaker=outbound(policies, CIRCUIT_BREAKER, MeshCircuitBreakerConf, service),
            health_check=outbound(policies, HEALTH_CHECK, MeshHealthCheckConf, service),
            load_balancing=outbound(policies, LOAD_BALANCING, MeshLoadBalancingStrategyConf,
                                    service),
        )
