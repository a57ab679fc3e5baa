"""Envoy generation scenarios for routes, rate limits, fault injection and telemetry
(MeshHTTPRoute, MeshTCPRoute, MeshRateLimit, MeshFaultInjection, MeshAccessLog, MeshTrace,
MeshMetric); ``tests/unit/envoy_scenarios.py`` appends them to ``SCENARIOS``.
"""

from __future__ import annotations

from tests.unit.envoy_inputs import ALLOW_ALL, WEB_ALL, WEB_HTTP, WEB_TCP, Scenario

ROUTE_AND_TELEMETRY_SCENARIOS = [
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
