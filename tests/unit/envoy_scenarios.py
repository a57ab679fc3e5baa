"""Envoy generation scenarios (proxy.envoy), shared by the generation tests and
``tests/integration/test_envoy_accepts.py``.

Each scenario is a Dataplane, the mesh's policies (YAML, parsed with the real kinds and
matched with ``match_policies``), the mTLS mode and the destinations' endpoints (inputs in
``envoy_inputs``; the route, rate-limit, fault and telemetry scenarios in
``envoy_scenarios_l7``). ``generated`` runs the generator on one, ``as_data`` gives its
resources as plain data (``MessageToDict`` with proto field names); ``_matches`` is a small
RBAC evaluator.
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from google.protobuf.json_format import MessageToDict

from gossamer.model.base import Resource
from gossamer.model.dataplane import DataplaneSpec
from gossamer.model.registry import parse_document
from gossamer.policy import match_policies
from proxy.context import OutboundListener, ProxyContext
from proxy.envoy import ProxyResources, generate
from proxy.envoy.resources import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE
from tests.unit.envoy_inputs import (
    ALLOW_ALL,
    MULTI_INBOUND,
    WEB_ALL,
    WEB_HTTP,
    WEB_TCP,
    ZONE,
    Scenario,
)
from tests.unit.envoy_scenarios_l7 import ROUTE_AND_TELEMETRY_SCENARIOS

SCENARIOS = [
    Scenario("http", WEB_HTTP),
    Scenario("tcp", WEB_TCP),
    Scenario("permissive", WEB_HTTP, mtls_mode="permissive"),
    Scenario("inbounds", MULTI_INBOUND),
    Scenario("no-permission", WEB_TCP, policies=()),
    Scenario("traffic-permission", WEB_HTTP, policies=("""
type: MeshTrafficPermission
name: web-callers
mesh: default
spec:
  targetRef: {kind: MeshService, name: web}
  from:
  - targetRef: {kind: Mesh}
    default: {action: Deny}
  - targetRef: {kind: MeshService, name: frontend}
    default: {action: Allow}
  - targetRef: {kind: MeshServiceSubset, name: frontend, tags: {version: canary}}
    default: {action: Deny}
  - targetRef: {kind: MeshSubset, tags: {team: ops}}
    default: {action: AllowWithShadowDeny}
""",)),
    Scenario("timeout", WEB_ALL, policies=(ALLOW_ALL, """
type: MeshTimeout
name: timeouts
mesh: default
spec:
  targetRef: {kind: Mesh}
  to:
  - targetRef: {kind: Mesh}
    default: {connectionTimeout: 2s, idleTimeout: 1h}
  - targetRef: {kind: MeshService, name: backend}
    default:
      http: {requestTimeout: 1500ms, streamIdleTimeout: 30s, maxStreamDuration: 5m,
             maxConnectionDuration: 1h, requestHeadersTimeout: 3s}
  from:
  - targetRef: {kind: Mesh}
    default:
      connectionTimeout: 1s
      idleTimeout: 10m
      http: {requestTimeout: 20s, streamIdleTimeout: 1m}
""")),
    Scenario("retry", WEB_ALL, policies=(ALLOW_ALL, """
type: MeshRetry
name: retries
mesh: default
spec:
  targetRef: {kind: Mesh}
  to:
  - targetRef: {kind: MeshService, name: backend}
    default:
      http:
        numRetries: 3
        perTryTimeout: 500ms
        backOff: {baseInterval: 25ms, maxInterval: 250ms}
        rateLimitedBackOff:
          resetHeaders: [{name: retry-after, format: Seconds}]
          maxInterval: 10s
        retryOn: [5xx, reset, "503", GET]
        retriableRequestHeaders: [{type: Present, name: x-idempotent}]
        hostSelection:
        - predicate: OmitPreviousHosts
        - predicate: OmitHostMetadata
          tags: {version: v2}
        - predicate: OmitPreviousPriorities
          updateFrequency: 2
        hostSelectionMaxAttempts: 3
  - targetRef: {kind: MeshService, name: payments}
    default:
      grpc: {numRetries: 2, retryOn: [canceled, unavailable], perTryTimeout: 1s}
  - targetRef: {kind: MeshService, name: db}
    default:
      tcp: {maxConnectAttempt: 5}
""")),
    Scenario("circuit-breaker", WEB_ALL, policies=(ALLOW_ALL, """
type: MeshCircuitBreaker
name: breakers
mesh: default
spec:
  targetRef: {kind: Mesh}
  to:
  - targetRef: {kind: MeshService, name: backend}
    default:
      connectionLimits: {maxConnections: 100, maxPendingRequests: 10, maxRequests: 200,
                         maxRetries: 3, maxConnectionPools: 50}
      outlierDetection:
        interval: 5s
        baseEjectionTime: 30s
        maxEjectionPercent: 50
        splitExternalAndLocalErrors: true
        detectors:
          totalFailures: {consecutive: 5}
          gatewayFailures: {consecutive: 3}
          localOriginFailures: {consecutive: 2}
          successRate: {minimumHosts: 3, requestVolume: 20, standardDeviationFactor: "1.9"}
          failurePercentage: {minimumHosts: 3, requestVolume: 10, threshold: 85}
  - targetRef: {kind: MeshService, name: db}
    default:
      outlierDetection:
        detectors:
          totalFailures: {consecutive: 1}
  from:
  - targetRef: {kind: Mesh}
    default:
      connectionLimits: {maxConnections: 1024}
""")),
    Scenario("health-check", WEB_ALL, policies=(ALLOW_ALL, """
type: MeshHealthCheck
name: checks
mesh: default
spec:
  targetRef: {kind: Mesh}
  to:
  - targetRef: {kind: Mesh}
    default:
      interval: 10s
      timeout: 2s
      unhealthyThreshold: 3
      healthyThreshold: 1
      initialJitter: 1s
      intervalJitter: 500ms
      intervalJitterPercent: 10
      healthyPanicThreshold: 30
      failTrafficOnPanic: true
      noTrafficInterval: 30s
      eventLogPath: /tmp/health.log
      alwaysLogHealthCheckFailures: true
      reuseConnection: false
      http:
        path: /health
        expectedStatuses: [200, 204]
        requestHeadersToAdd:
          set: [{name: x-probe, value: gossamer}]
      grpc: {serviceName: grpc.health.v1.Health, authority: payments.mesh}
  - targetRef: {kind: MeshService, name: db}
    default:
      tcp: {send: cGluZw==, receive: [cG9uZw==]}
""")),
    Scenario("load-balancing", WEB_ALL, policies=(ALLOW_ALL, """
type: MeshLoadBalancingStrategy
name: lb
mesh: default
spec:
  targetRef: {kind: Mesh}
  to:
  - targetRef: {kind: MeshService, name: backend}
    default:
      loadBalancer:
        type: RingHash
        ringHash:
          hashFunction: MurmurHash2
          minRingSize: 1024
          maxRingSize: 8192
          hashPolicies:
          - {type: Header, header: {name: x-user}}
          - {type: Cookie, cookie: {name: session, ttl: 1h, path: /}, terminal: true}
          - {type: QueryParameter, queryParameter: {name: user}}
          - {type: SourceIP}
      localityAwareness:
        localZone:
          affinityTags: [{key: rack}]
        crossZone:
          failover:
          - from: {zones: [lab]}
            to: {type: Only, zones: [west]}
          - to: {type: Any}
          failoverThreshold: {percentage: 50}
  - targetRef: {kind: MeshService, name: payments}
    default:
      loadBalancer: {type: LeastRequest, leastRequest: {choiceCount: 3}}
  - targetRef: {kind: MeshService, name: db}
    default:
      loadBalancer:
        type: Maglev
        maglev: {tableSize: 65537, hashPolicies: [{type: SourceIP}]}
      localityAwareness: {disabled: true}
""")),
    *ROUTE_AND_TELEMETRY_SCENARIOS,
]


SCENARIO_NAMES = [s.name for s in SCENARIOS]


def resource(text: str) -> Resource:
    return parse_document(yaml.safe_load(text))


def context(scenario: Scenario) -> ProxyContext:
    dataplane = resource(scenario.dataplane)
    spec = dataplane.spec
    assert isinstance(spec, DataplaneSpec)
    policies = [resource(p) for p in scenario.policies]
    outbounds = tuple(OutboundListener(o.service, o.port, o.address or "127.0.0.1")
                      for o in spec.networking.outbound)
    matched = match_policies(dataplane, policies, destinations=scenario.services, zone=ZONE)
    return ProxyContext(mesh=dataplane.mesh, name=dataplane.name, zone=ZONE, dataplane=spec,
                        policies=matched, outbounds=outbounds, services=scenario.services,
                        mtls_mode=scenario.mtls_mode)


def as_data(resources: ProxyResources) -> dict[str, Any]:
    """The resources as plain data: {type short name: {resource name: message dict}}."""
    short = {LISTENER_TYPE: "listeners", CLUSTER_TYPE: "clusters",
             ENDPOINT_TYPE: "endpoints", ROUTE_TYPE: "routes"}
    out: dict[str, Any] = {v: {} for v in short.values()}
    for type_url, name, message in resources.items():
        # json round trip: Any fields come back as OrderedDicts, which YAML won't dump.
        out[short[type_url]][name] = json.loads(json.dumps(
            MessageToDict(message, preserving_proto_field_name=True)))
    return out


def generated(scenario: Scenario) -> ProxyResources:
    return generate(context(scenario))


def scenario(name: str) -> Scenario:
    return next(s for s in SCENARIOS if s.name == name)


TLS_CONTEXT_TYPES = ("type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
                     "DownstreamTlsContext",
                     "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
                     "UpstreamTlsContext")


# A small RBAC evaluator: which principals a peer with these URI SANs satisfies.
def _matches(principal: Any, uris: set[str]) -> bool:
    kind = principal.WhichOneof("identifier")
    if kind == "any":
        return True
    if kind == "authenticated":
        return principal.authenticated.principal_name.exact in uris
    if kind == "and_ids":
        return all(_matches(p, uris) for p in principal.and_ids.ids)
    if kind == "or_ids":
        return any(_matches(p, uris) for p in principal.or_ids.ids)
    if kind == "not_id":
        return not _matches(principal.not_id, uris)
    raise AssertionError(kind)

