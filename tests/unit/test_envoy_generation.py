"""Envoy resource generation (proxy.envoy): golden files per scenario, plus behaviour.

Each scenario is a Dataplane, the mesh's policies (YAML, parsed with the real kinds and
matched with ``match_policies``), the mTLS mode and the destinations' endpoints. Its
generated resources, as YAML (``MessageToDict`` with proto field names, sorted keys),
must equal ``golden/envoy/<scenario>.yaml``. ``tests/integration/test_envoy_accepts.py``
feeds the same scenarios to a real Envoy.

Regenerate after an intended change with ``GOSSAMER_UPDATE_GOLDEN=1 pytest
tests/unit/test_envoy_generation.py`` and review the diff; with ``CI`` set, updating is
refused, so a CI run can never rewrite the goldens it checks.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf.json_format import MessageToDict

from gossamer.model.base import Resource
from gossamer.model.dataplane import DataplaneSpec
from gossamer.model.registry import parse_document
from gossamer.policy import match_policies
from proxy.context import (
    ADMIN_CLUSTER,
    IDENTITY_SECRET,
    PROMETHEUS_TLS_SECRET,
    Endpoint,
    OutboundListener,
    ProxyContext,
    RemoteZone,
    Service,
    sni,
    spiffe,
    tag_uri,
)
from proxy.envoy import (
    ClusterConfs,
    Destination,
    Hosts,
    Locality,
    PieceCache,
    ProxyResources,
    endpoints,
    generate,
    outbound_cluster,
)
from proxy.envoy.clusters import http_collector
from proxy.envoy.resources import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE

GOLDEN_DIR = Path(__file__).parent / "golden" / "envoy"
UPDATE = os.environ.get("GOSSAMER_UPDATE_GOLDEN") == "1"
MESH = "default"
ZONE = "lab"
SVC = "gossamer.io/service"
PROTO = "gossamer.io/protocol"

# --- scenario inputs -------------------------------------------------------------------

WEB_HTTP = """
type: Dataplane
mesh: default
name: web-1
networking:
  address: 10.0.0.1
  inbound:
  - port: 18080
    servicePort: 8080
    tags: {gossamer.io/service: web, gossamer.io/protocol: http, version: v1}
  outbound:
  - port: 20001
    tags: {gossamer.io/service: backend}
"""

WEB_TCP = """
type: Dataplane
mesh: default
name: db-client-1
networking:
  address: 10.0.0.1
  inbound:
  - port: 15432
    servicePort: 5432
    tags: {gossamer.io/service: cache, gossamer.io/protocol: tcp}
  outbound:
  - port: 20002
    tags: {gossamer.io/service: db}
"""

# One proxy calling an HTTP, a gRPC and a TCP destination: the outbound policy scenarios.
WEB_ALL = """
type: Dataplane
mesh: default
name: web-1
networking:
  address: 10.0.0.1
  inbound:
  - port: 18080
    servicePort: 8080
    tags: {gossamer.io/service: web, gossamer.io/protocol: http, version: v1,
           rack: r1}
  outbound:
  - port: 20001
    tags: {gossamer.io/service: backend}
  - port: 20003
    tags: {gossamer.io/service: payments}
  - port: 20002
    address: 240.0.0.7
    tags: {gossamer.io/service: db}
"""

# Several inbounds: a hostname address, gRPC at a service address, HTTP/2 without a
# servicePort (the app listens on the inbound port, on loopback).
MULTI_INBOUND = """
type: Dataplane
mesh: default
name: multi-1
networking:
  address: multi.example.internal
  inbound:
  - port: 19090
    servicePort: 9090
    serviceAddress: 10.0.0.20
    tags: {gossamer.io/service: grpc-api, gossamer.io/protocol: grpc}
  - port: 18443
    address: 10.0.0.21
    tags: {gossamer.io/service: h2-api, gossamer.io/protocol: http2}
  - port: 16379
    tags: {gossamer.io/service: redis}
"""

ALLOW_ALL = """
type: MeshTrafficPermission
name: allow-all
mesh: default
spec:
  targetRef: {kind: Mesh}
  from:
  - targetRef: {kind: Mesh}
    default: {action: Allow}
"""

SERVICES = {
    "backend": Service(
        name="backend", protocol="http",
        endpoints=(
            Endpoint("10.0.0.2", 18080, {SVC: "backend", PROTO: "http", "version": "v1",
                                         "rack": "r1"}),
            Endpoint("10.0.0.3", 18080, {SVC: "backend", PROTO: "http", "version": "v2",
                                         "rack": "r2"}, weight=2),
            Endpoint("10.0.0.4", 18080, {SVC: "backend", PROTO: "http", "version": "v2"},
                     healthy=False),
        ),
        remote=(RemoteZone("east", "192.168.1.10", 10001, instances=3),
                RemoteZone("west", "192.168.2.10", 10001, instances=1))),
    "backend-canary": Service(
        name="backend-canary", protocol="http",
        endpoints=(Endpoint("10.0.0.9", 18080, {SVC: "backend-canary"}),)),
    "payments": Service(
        name="payments", protocol="grpc",
        endpoints=(Endpoint("10.0.0.5", 19090, {SVC: "payments", PROTO: "grpc"}),)),
    "db": Service(
        name="db", protocol="tcp",
        endpoints=(Endpoint("10.0.0.6", 15432, {SVC: "db", "role": "primary"}),
                   Endpoint("10.0.0.7", 15432, {SVC: "db", "role": "replica"})),
        remote=(RemoteZone("east", "192.168.1.10", 10001, instances=2),)),
}


@dataclass(frozen=True)
class Scenario:
    name: str
    dataplane: str
    policies: tuple[str, ...] = (ALLOW_ALL,)
    mtls_mode: str = "strict"
    services: dict[str, Service] = field(default_factory=lambda: SERVICES)


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
    Scenario("http-route", WEB_ALL, policies=(ALLOW_ALL, """
type: MeshHTTPRoute
name: backend-routes
mesh: default
spec:
  targetRef: {kind: Mesh}
  to:
  - targetRef: {kind: MeshService, name: backend}
    rules:
    - matches:
      - path: {type: PathPrefix, value: /api}
        method: GET
      - path: {type: Exact, value: /login}
        headers: [{type: Exact, name: x-canary, value: "1"}]
      default:
        filters:
        - type: RequestHeaderModifier
          requestHeaderModifier:
            set: [{name: x-route, value: api}]
            add: [{name: x-trace, value: "on"}]
            remove: [x-debug]
        - type: ResponseHeaderModifier
          responseHeaderModifier:
            set: [{name: x-served-by, value: backend}]
        - type: RequestMirror
          requestMirror:
            backendRef: {kind: MeshService, name: backend-canary}
            percentage: 10
        backendRefs:
        - {kind: MeshServiceSubset, name: backend, tags: {version: v1}, weight: 80}
        - {kind: MeshServiceSubset, name: backend, tags: {version: v2}, weight: 20}
    - matches:
      - path: {type: PathPrefix, value: /v1}
      default:
        filters:
        - type: URLRewrite
          urlRewrite:
            hostname: backend.internal
            path: {type: ReplacePrefixMatch, replacePrefixMatch: /}
    - matches:
      - path: {type: RegularExpression, value: "^/items/[0-9]+$"}
        queryParams: [{type: Exact, name: debug, value: "1"}]
      - headers: [{type: Absent, name: x-user}]
      default:
        filters:
        - type: URLRewrite
          urlRewrite:
            hostToBackendHostname: true
            path: {type: ReplaceFullPath, replaceFullPath: /items}
        backendRefs:
        - {kind: MeshService, name: backend-canary}
    - matches:
      - path: {type: Exact, value: /old}
      default:
        filters:
        - type: RequestRedirect
          requestRedirect: {scheme: https, hostname: example.com, port: 8443,
                            statusCode: 301,
                            path: {type: ReplaceFullPath, replaceFullPath: /new}}
    - matches:
      - path: {type: PathPrefix, value: /gone}
      default:
        backendRefs: [{kind: MeshService, name: backend, weight: 0}]
""")),
    Scenario("tcp-route", WEB_ALL, policies=(ALLOW_ALL, """
type: MeshTCPRoute
name: db-split
mesh: default
spec:
  targetRef: {kind: Mesh}
  to:
  - targetRef: {kind: MeshService, name: db}
    rules:
    - default:
        backendRefs:
        - {kind: MeshServiceSubset, name: db, tags: {role: primary}, weight: 90}
        - {kind: MeshServiceSubset, name: db, tags: {role: replica}, weight: 10}
  - targetRef: {kind: MeshService, name: backend}
    rules:
    - default:
        backendRefs:
        - {kind: MeshService, name: backend, weight: 3}
        - {kind: MeshService, name: backend-canary, weight: 1}
""")),
    Scenario("rate-limit-http", WEB_HTTP, policies=(ALLOW_ALL, """
type: MeshRateLimit
name: limits
mesh: default
spec:
  targetRef: {kind: Mesh}
  from:
  - targetRef: {kind: Mesh}
    default:
      local:
        http:
          requestRate: {num: 100, interval: 1s}
          onRateLimit:
            status: 429
            headers:
              add: [{name: x-rate-limited, value: "true"}]
        tcp:
          connectionRate: {num: 10, interval: 500ms}
""")),
    Scenario("rate-limit-tcp", WEB_TCP, policies=(ALLOW_ALL, """
type: MeshRateLimit
name: limits
mesh: default
spec:
  targetRef: {kind: Mesh}
  rules:
  - default:
      local:
        tcp:
          connectionRate: {num: 10, interval: 500ms}
""")),
    Scenario("fault-injection", WEB_ALL, policies=(ALLOW_ALL, """
type: MeshFaultInjection
name: chaos
mesh: default
spec:
  targetRef: {kind: Mesh}
  to:
  - targetRef: {kind: MeshService, name: backend}
    default:
      http:
      - abort: {httpStatus: 503, percentage: 30}
      - delay: {value: 200ms, percentage: "12.5"}
        responseBandwidth: {limit: 50kbps, percentage: 100}
  from:
  - targetRef: {kind: Mesh}
    default:
      http:
      - abort: {httpStatus: 500, percentage: 1}
""")),
    Scenario("access-log", WEB_ALL, policies=(ALLOW_ALL, """
type: MeshAccessLog
name: logs
mesh: default
spec:
  targetRef: {kind: Mesh}
  to:
  - targetRef: {kind: Mesh}
    default:
      backends:
      - file:
          path: /dev/stdout
          format:
            type: Json
            json:
            - {key: start, value: "%START_TIME%"}
            - {key: status, value: "%RESPONSE_CODE%"}
            omitEmptyValues: true
      - openTelemetry:
          endpoint: 10.0.9.9:4317
          body: {message: "%REQ(:PATH)%", code: 200, nested: [true, 1.5]}
          attributes: [{key: mesh, value: default}]
      - tcp: {address: "10.0.9.9:5000"}
  rules:
  - default:
      backends:
      - file:
          path: /var/log/inbound.log
          format: {type: Plain, plain: "[%START_TIME%] %DOWNSTREAM_PEER_URI_SAN%"}
""")),
    Scenario("trace-otel", WEB_ALL, policies=(ALLOW_ALL, """
type: MeshTrace
name: traces
mesh: default
spec:
  targetRef: {kind: Mesh}
  default:
    backends:
    - type: OpenTelemetry
      openTelemetry: {endpoint: "10.0.9.9:4317"}
    sampling: {overall: 80, client: 100, random: "12.5"}
    tags:
    - {name: team, literal: core}
    - {name: user, header: {name: x-user, default: anonymous}}
""")),
    Scenario("trace-zipkin", WEB_HTTP, policies=(ALLOW_ALL, """
type: MeshTrace
name: traces
mesh: default
spec:
  targetRef: {kind: Mesh}
  default:
    backends:
    - type: Zipkin
      zipkin: {url: "http://zipkin.local:9411/api/v2/spans", traceId128bit: true,
               apiVersion: httpProto, sharedSpanContext: false}
""")),
    Scenario("trace-datadog", WEB_HTTP, policies=(ALLOW_ALL, """
type: MeshTrace
name: traces
mesh: default
spec:
  targetRef: {kind: Mesh}
  default:
    backends:
    - type: Datadog
      datadog: {url: "http://10.0.9.8:8126"}
""")),
    Scenario("metric", WEB_HTTP, policies=(ALLOW_ALL, """
type: MeshMetric
name: metrics
mesh: default
spec:
  targetRef: {kind: Mesh}
  default:
    sidecar:
      profiles:
        appendProfiles: [{name: None}]
        include:
        - {type: Prefix, match: "cluster.backend."}
        - {type: Regex, match: "http\\\\..*rq_total"}
    backends:
    - type: Prometheus
      prometheus: {port: 5670, path: /metrics}
    - type: Prometheus
      prometheus: {port: 5671, path: /stats, tls: {mode: ActiveMTLSBackend}}
    - type: Prometheus
      prometheus: {port: 5672, tls: {mode: ProvidedTLS}}
""")),
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


def as_yaml(resources: ProxyResources) -> str:
    return yaml.safe_dump(as_data(resources), sort_keys=True, default_flow_style=False,
                          width=100)


def generated(scenario: Scenario) -> ProxyResources:
    return generate(context(scenario))


# --- goldens ---------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS, ids=SCENARIO_NAMES)
def test_golden(scenario: Scenario) -> None:
    path = GOLDEN_DIR / f"{scenario.name}.yaml"
    text = as_yaml(generated(scenario))
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"no golden {path}; run with GOSSAMER_UPDATE_GOLDEN=1 and review it"
    assert text == path.read_text(), (
        f"{scenario.name}: generated resources differ from {path}; if the change is "
        "intended, regenerate with GOSSAMER_UPDATE_GOLDEN=1 and review the diff")


def test_goldens_are_not_regenerated_in_ci() -> None:
    assert not (UPDATE and os.environ.get("CI")), (
        "GOSSAMER_UPDATE_GOLDEN=1 with CI set: goldens must be regenerated by a person, "
        "never by the run that checks them")


def test_no_stale_goldens() -> None:
    names = {p.stem for p in GOLDEN_DIR.glob("*.yaml")}
    assert names == set(SCENARIO_NAMES)


def test_generation_is_deterministic() -> None:
    for scenario in SCENARIOS:
        assert as_yaml(generated(scenario)) == as_yaml(generated(scenario))


# --- behaviour -------------------------------------------------------------------------


def scenario(name: str) -> Scenario:
    return next(s for s in SCENARIOS if s.name == name)


def test_resources_iterate_by_type_then_name() -> None:
    res = generated(scenario("http"))
    items = list(res.items())
    types = [t for t, _, _ in items]
    assert types == sorted(types, key=[CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE,
                                       ROUTE_TYPE].index)
    assert {n for t, n, _ in items if t == LISTENER_TYPE} == {
        "inbound:10.0.0.1:18080", "outbound:127.0.0.1:20001"}
    assert {n for t, n, _ in items if t == CLUSTER_TYPE} == {"backend", "localhost:8080"}
    assert {n for t, n, _ in items if t == ROUTE_TYPE} == {
        "inbound:10.0.0.1:18080", "outbound:backend"}


def test_outbound_cluster_is_mtls_to_the_service_identity() -> None:
    cluster = generated(scenario("http")).clusters["backend"]
    data = MessageToDict(cluster, preserving_proto_field_name=True)
    tls = data["transport_socket"]["typed_config"]
    assert tls["sni"] == sni("backend", MESH)
    sans = tls["common_tls_context"]["combined_validation_context"][
        "default_validation_context"]["match_typed_subject_alt_names"]
    assert sans == [{"san_type": "URI", "matcher": {"exact": spiffe(MESH, "backend")}}]
    assert data["eds_cluster_config"]["service_name"] == "backend"


TLS_CONTEXT_TYPES = ("type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
                     "DownstreamTlsContext",
                     "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
                     "UpstreamTlsContext")
TLS13_ONLY = {"tls_minimum_protocol_version": "TLSv1_3",
              "tls_maximum_protocol_version": "TLSv1_3"}


def tls_contexts(node: Any, where: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every TLS context in generated data, with the resource it sits in."""
    if isinstance(node, list):
        return [found for item in node for found in tls_contexts(item, where)]
    if not isinstance(node, dict):
        return []
    here = [(where, node)] if node.get("@type") in TLS_CONTEXT_TYPES else []
    return here + [found for key, value in node.items()
                   for found in tls_contexts(value, where or str(key))]


def is_mesh_mtls(context: dict[str, Any]) -> bool:
    """Mesh mTLS presents the workload identity from SDS (an operator's certificate for
    non-mesh clients, or a collector's server-only TLS, does not)."""
    common = context.get("common_tls_context", {})
    return any(s["name"] == IDENTITY_SECRET
               for s in common.get("tls_certificate_sds_secret_configs", []))


@pytest.mark.parametrize("scenario", SCENARIOS, ids=SCENARIO_NAMES)
def test_mesh_mtls_is_tls13_only(scenario: Scenario) -> None:
    """Under TLS 1.2 both peers' certificates cross the network (and, cross-zone, the
    WAN) in clear: every mesh mTLS context, inbound and outbound, is TLS 1.3 only."""
    data = as_data(generated(scenario))
    mesh = [(where, c) for where, c in tls_contexts(data) if is_mesh_mtls(c)]
    inbound = [c for where, c in mesh if c["@type"].endswith("DownstreamTlsContext")]
    outbound = [c for where, c in mesh if c["@type"].endswith("UpstreamTlsContext")]
    assert inbound, "every scenario has an mTLS inbound"
    # Every outbound cluster is to a mesh service (EDS) and carries a mesh context.
    assert len(outbound) == sum(c.get("type") == "EDS" for c in data["clusters"].values())
    for where, context in mesh:
        assert context["common_tls_context"].get("tls_params") == TLS13_ONLY, where


def test_tls_toward_non_mesh_peers_keeps_tls12() -> None:
    """An operator's certificate served to a non-mesh scraper, and an HTTPS collector,
    are not mesh mTLS: their peers may not speak TLS 1.3."""
    data = as_data(generated(scenario("metric")))
    [(where, provided)] = [(w, c) for w, c in tls_contexts(data) if not is_mesh_mtls(c)]
    assert where == "listeners"
    assert provided["common_tls_context"]["tls_certificate_sds_secret_configs"][0][
        "name"] == PROMETHEUS_TLS_SECRET
    assert provided["common_tls_context"]["tls_params"] == {
        "tls_minimum_protocol_version": "TLSv1_2"}
    collector = MessageToDict(http_collector("zipkin", "https://zipkin.example:9411/api"),
                              preserving_proto_field_name=True)
    [(_, upstream)] = tls_contexts(collector)
    assert not is_mesh_mtls(upstream) and "tls_params" not in upstream.get(
        "common_tls_context", {})


def _hosts(service: str) -> Hosts:
    return Hosts.of(SERVICES[service])


def test_load_assignment_priorities_and_weights() -> None:
    cla = endpoints("backend", _hosts("backend"), ZONE)
    levels = [(e.priority, e.locality.zone, e.load_balancing_weight.value)
              for e in cla.endpoints]
    assert levels == [(0, ZONE, 4), (1, "east", 3), (1, "west", 1)]
    assert all(e.HasField("load_balancing_weight") for e in cla.endpoints)


def test_load_assignment_without_local_instances_starts_at_priority_zero() -> None:
    hosts = Hosts(remote=SERVICES["backend"].remote)
    cla = endpoints("backend", hosts, ZONE)
    assert [(e.priority, e.locality.zone) for e in cla.endpoints] == [(0, "east"), (0, "west")]


def test_subset_keeps_only_tagged_local_instances() -> None:
    hosts = Hosts.of(SERVICES["backend"], (("version", "v2"),))
    assert [h.address for h in hosts.local] == ["10.0.0.3", "10.0.0.4"]
    assert hosts.remote == ()


def test_locality_failover_threshold_sets_overprovisioning() -> None:
    cla = generated(scenario("load-balancing")).endpoints["backend"]
    assert cla.policy.overprovisioning_factor.value == 200
    assert [(e.priority, e.locality.zone, e.locality.sub_zone) for e in cla.endpoints] == [
        (0, ZONE, "rack=r1"), (0, ZONE, ""), (1, "west", ""), (2, "east", "")]


def test_pieces_are_shared_across_proxies_through_the_cache() -> None:
    cache = PieceCache()
    first = generate(context(scenario("http")), cache)
    other = Scenario("other", WEB_HTTP.replace("web-1", "web-2").replace("10.0.0.1", "10.0.0.8"))
    second = generate(context(other), cache)
    assert second.clusters["backend"] is first.clusters["backend"]
    assert second.endpoints["backend"] is first.endpoints["backend"]
    assert second.listeners["outbound:127.0.0.1:20001"] is not first.listeners[
        "outbound:127.0.0.1:20001"]
    timed = generate(context(scenario("timeout")), cache)
    assert timed.clusters["backend"] is not first.clusters["backend"]
    assert timed.endpoints["backend"] is first.endpoints["backend"]


def test_cluster_inputs_hash_even_with_list_fields() -> None:
    ctx = context(scenario("health-check"))
    confs = ClusterConfs.of(ctx.policies, "backend")
    again = ClusterConfs.of(context(scenario("health-check")).policies, "backend")
    assert hash(confs) == hash(again) and confs == again
    assert confs != ClusterConfs()
    destination = Destination(MESH, "backend", "http")
    assert {(destination, confs): 1}[(destination, again)] == 1
    assert outbound_cluster(destination, confs) == outbound_cluster(destination, again)
    assert hash(Locality.of(None, {}, ZONE)) == hash(Locality())


def test_endpoint_change_changes_only_that_service() -> None:
    cache = PieceCache()
    base = context(scenario("retry"))
    first = generate(base, cache)
    backend = SERVICES["backend"]
    moved = Service(backend.name, backend.protocol, backend.endpoints[:1], backend.remote)
    changed = ProxyContext(**{**base.__dict__, "services": {**SERVICES, "backend": moved}})
    second = generate(changed, cache)
    differs = {n for n in first.endpoints if first.endpoints[n] is not second.endpoints[n]}
    assert differs == {"backend"}
    assert all(first.clusters[n] is second.clusters[n] for n in first.clusters
               if n in ("backend", "payments", "db"))


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


def _allowed(rbac: Any, uris: set[str]) -> bool:
    assert rbac.action == 0  # ALLOW
    return any(_matches(p, uris) for pol in rbac.policies.values() for p in pol.principals)


def _uris(service: str, **tags: str) -> set[str]:
    return {spiffe(MESH, service)} | {tag_uri(k, v) for k, v in tags.items()}


def _http_rbac(res: ProxyResources) -> Any:
    from envoy.extensions.filters.http.rbac.v3 import rbac_pb2
    from envoy.extensions.filters.network.http_connection_manager.v3 import (
        http_connection_manager_pb2,
    )
    hcm = http_connection_manager_pb2.HttpConnectionManager()
    res.listeners["inbound:10.0.0.1:18080"].filter_chains[0].filters[0].typed_config.Unpack(hcm)
    config = rbac_pb2.RBAC()
    assert hcm.http_filters[0].name == "envoy.filters.http.rbac"
    hcm.http_filters[0].typed_config.Unpack(config)
    return config


@pytest.mark.parametrize(("caller", "allowed", "shadow_allowed"), [
    (_uris("frontend"), True, True),
    (_uris("frontend", version="canary"), False, False),
    (_uris("frontend", team="ops"), True, True),
    (_uris("frontend", team="ops", version="canary"), False, False),
    (_uris("batch", team="ops"), True, False),
    (_uris("batch"), False, False),
])
def test_traffic_permission_is_first_match(caller: set[str], allowed: bool,
                                           shadow_allowed: bool) -> None:
    config = _http_rbac(generated(scenario("traffic-permission")))
    assert _allowed(config.rules, caller) is allowed
    assert _allowed(config.shadow_rules, caller) is shadow_allowed


def test_no_traffic_permission_denies_everyone() -> None:
    from envoy.extensions.filters.network.rbac.v3 import rbac_pb2
    res = generated(scenario("no-permission"))
    filters = res.listeners["inbound:10.0.0.1:15432"].filter_chains[0].filters
    assert [f.name for f in filters] == ["envoy.filters.network.rbac",
                                         "envoy.filters.network.tcp_proxy"]
    config = rbac_pb2.RBAC()
    filters[0].typed_config.Unpack(config)
    assert not config.rules.policies
    assert not _allowed(config.rules, _uris("anyone"))


def test_permissive_accepts_tls_and_plaintext() -> None:
    listener = generated(scenario("permissive")).listeners["inbound:10.0.0.1:18080"]
    assert [c.filter_chain_match.transport_protocol for c in listener.filter_chains] == [
        "tls", "raw_buffer"]
    assert listener.filter_chains[0].HasField("transport_socket")
    assert not listener.filter_chains[1].HasField("transport_socket")
    assert [f.name for f in listener.listener_filters] == ["envoy.filters.listener.tls_inspector"]


@pytest.mark.parametrize("name", ["http", "permissive", "inbounds", "metric", "trace-otel"])
def test_no_connection_manager_passes_on_a_client_certificate_header(name: str) -> None:
    """A client cannot hand the application a forged x-forwarded-client-cert (Envoy's
    default ``SANITIZE`` drops it) and the sidecar adds none: building one per request
    cost the sidecar pair CPU that nothing required (docs/benchmarks.md); RBAC checks
    callers."""
    from envoy.extensions.filters.network.http_connection_manager.v3 import (
        http_connection_manager_pb2,
    )
    hcm_type = http_connection_manager_pb2.HttpConnectionManager
    seen = 0
    for listener in generated(scenario(name)).listeners.values():
        for chain in listener.filter_chains:
            for f in chain.filters:
                if f.name != "envoy.filters.network.http_connection_manager":
                    continue
                hcm = hcm_type()
                f.typed_config.Unpack(hcm)
                assert hcm.forward_client_cert_details == hcm_type.SANITIZE, listener.name
                assert not hcm.HasField("set_current_client_cert_details"), listener.name
                seen += 1
    assert seen >= 1


def test_http_routes_follow_gateway_precedence() -> None:
    route_config = generated(scenario("http-route")).routes["outbound:backend"]
    matches = [MessageToDict(r.match) for r in route_config.virtual_hosts[0].routes]
    paths = [m.get("path") or m.get("pathSeparatedPrefix") or m.get("prefix")
             or "regex" for m in matches]
    assert paths == ["/login", "/old", "regex", "/gone", "/api", "/v1", "/", "/"]
    assert matches[-1] == {"prefix": "/"}


def test_split_by_tags_uses_subset_clusters() -> None:
    res = generated(scenario("http-route"))
    api = next(r for r in res.routes["outbound:backend"].virtual_hosts[0].routes
               if r.match.path_separated_prefix == "/api")
    weights = {c.name: c.weight.value for c in api.route.weighted_clusters.clusters}
    assert sorted(weights.values()) == [20, 80]
    for name in weights:
        assert name.startswith("backend__") and name in res.clusters
        assert res.clusters[name].eds_cluster_config.service_name == name
        assert res.endpoints[name].cluster_name == name
    v1 = next(n for n, w in weights.items() if w == 80)
    assert [e.endpoint.address.socket_address.address
            for loc in res.endpoints[v1].endpoints for e in loc.lb_endpoints] == ["10.0.0.2"]


def test_envoy_package_is_pure() -> None:
    import ast

    package = Path(__file__).parents[2] / "proxy" / "envoy"
    banned = {"asyncio", "grpc", "socket", "asyncpg", "subprocess"}
    for module in package.glob("*.py"):
        tree = ast.parse(module.read_text())
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not {n.split(".")[0] for n in names} & banned, f"{module.name}: {names}"


def test_prometheus_listener_scrapes_the_admin_cluster() -> None:
    res = generated(scenario("metric"))
    assert {n for n in res.listeners if n.startswith("prometheus:")} == {
        "prometheus:5670", "prometheus:5671", "prometheus:5672"}
    scrape = res.routes["prometheus:5670"].virtual_hosts[0].routes[0]
    assert scrape.match.path == "/metrics"
    assert scrape.route.cluster == ADMIN_CLUSTER
    assert scrape.route.prefix_rewrite.startswith("/stats/prometheus?usedonly&filter=")
    assert not res.listeners["prometheus:5670"].filter_chains[0].HasField("transport_socket")
    assert res.listeners["prometheus:5671"].filter_chains[0].HasField("transport_socket")


def test_inbound_addresses_and_local_clusters() -> None:
    res = generated(scenario("inbounds"))
    assert set(res.listeners) == {"inbound:0.0.0.0:19090", "inbound:10.0.0.21:18443",
                                  "inbound:0.0.0.0:16379"}
    assert set(res.clusters) == {"local:10.0.0.20:9090", "localhost:18443", "localhost:16379"}
    grpc_app = MessageToDict(res.clusters["local:10.0.0.20:9090"],
                             preserving_proto_field_name=True)
    options = grpc_app["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert "http2_protocol_options" in options["explicit_http_config"]
    assert "typed_extension_protocol_options" not in MessageToDict(
        res.clusters["localhost:16379"])


def test_every_ingress_of_a_zone_shares_its_locality() -> None:
    service = Service("svc", "http", remote=(
        RemoteZone("east", "192.168.1.11", 10001, instances=4),
        RemoteZone("east", "192.168.1.10", 10001, instances=4),
        RemoteZone("west", "192.168.2.10", 10001, instances=4)))
    cla = endpoints("svc", Hosts.of(service), ZONE)
    by_zone = {loc.locality.zone: loc for loc in cla.endpoints}
    assert sorted(by_zone) == ["east", "west"]
    east, west = by_zone["east"], by_zone["west"]
    assert [e.endpoint.address.socket_address.address for e in east.lb_endpoints] == [
        "192.168.1.10", "192.168.1.11"]
    # Both zones have 4 instances: the same locality weight, and east's two ingresses
    # split it, so east gets no more than west for having two.
    assert east.load_balancing_weight.value == west.load_balancing_weight.value == 4
    assert [e.load_balancing_weight.value for e in east.lb_endpoints] == [2, 2]
    assert [e.load_balancing_weight.value for e in west.lb_endpoints] == [4]


def test_hostnames_never_reach_eds() -> None:
    service = Service("svc", "http", endpoints=(Endpoint("10.0.0.2", 80), Endpoint("host.lan", 80)),
                      remote=(RemoteZone("east", "ingress.example.com", 10001),
                              RemoteZone("west", "192.168.2.10", 10001)))
    cla = endpoints("svc", Hosts.of(service), ZONE)
    addresses = [e.endpoint.address.socket_address.address
                 for loc in cla.endpoints for e in loc.lb_endpoints]
    assert addresses == ["10.0.0.2", "192.168.2.10"]
