"""Every policy kind and one realistic, valid example of each (its ``spec`` as a person
would write it), for the policy-kind tests; ``_doc`` wraps a spec in its document.
"""

from __future__ import annotations

from typing import Any

POLICY_KINDS = [
    "MeshAccessLog", "MeshCircuitBreaker", "MeshFaultInjection", "MeshHTTPRoute",
    "MeshHealthCheck", "MeshLoadBalancingStrategy", "MeshMetric", "MeshPassthrough",
    "MeshRateLimit", "MeshRetry", "MeshTCPRoute", "MeshTimeout", "MeshTrace",
    "MeshTrafficPermission",
]


VALID: dict[str, str] = {
    "MeshTimeout": """
targetRef: {kind: MeshService, name: frontend}
to:
  - targetRef: {kind: MeshService, name: backend}
    default:
      connectionTimeout: 2s
      idleTimeout: 1h
      http: {requestTimeout: 15s, streamIdleTimeout: 30m, maxStreamDuration: 0s}
from:
  - targetRef: {kind: Mesh}
    default: {idleTimeout: 30m}
""",
    "MeshTrafficPermission": """
targetRef: {kind: MeshService, name: backend}
from:
  - targetRef: {kind: MeshService, name: frontend}
    default: {action: Allow}
  - targetRef: {kind: MeshSubset, tags: {env: dev}}
    default: {action: Deny}
  - targetRef: {kind: MeshServiceSubset, name: batch, tags: {version: "2"}}
    default: {action: AllowWithShadowDeny}
rules:
  - default: {action: Deny}
""",
    "MeshRetry": """
targetRef: {kind: MeshSubset, tags: {team: payments}}
to:
  - targetRef: {kind: MeshService, name: ledger}
    default:
      tcp: {maxConnectAttempt: 3}
      http:
        numRetries: 5
        perTryTimeout: 250ms
        backOff: {baseInterval: 25ms, maxInterval: 1s}
        rateLimitedBackOff:
          resetHeaders: [{name: retry-after, format: Seconds}]
          maxInterval: 30s
        retryOn: [5xx, gateway-error, reset, connect-failure, retriable-4xx, refused-stream,
                  retriable-status-codes, retriable-headers, GET, "503", "429"]
        retriableResponseHeaders:
          - {type: Exact, name: x-retry, value: "true"}
          - {type: Present, name: x-overloaded}
        retriableRequestHeaders:
          - {type: RegularExpression, name: ":path", value: "^/api/v[0-9]+/"}
        hostSelection:
          - {predicate: OmitPreviousHosts}
          - {predicate: OmitHostMetadata, tags: {canary: "true"}}
        hostSelectionMaxAttempts: 3
      grpc:
        numRetries: 2
        perTryTimeout: 1s
        backOff: {baseInterval: 100ms}
        retryOn: [unavailable, deadline-exceeded, resource-exhausted]
""",
    "MeshCircuitBreaker": """
targetRef: {kind: Mesh}
to:
  - targetRef: {kind: MeshService, name: inventory}
    default:
      connectionLimits:
        maxConnections: 1024
        maxPendingRequests: 128
        maxRequests: 1024
        maxRetries: 3
        maxConnectionPools: 16
      outlierDetection:
        disabled: false
        interval: 5s
        baseEjectionTime: 30s
        maxEjectionPercent: 20
        splitExternalAndLocalErrors: true
        detectors:
          totalFailures: {consecutive: 10}
          gatewayFailures: {consecutive: 5}
          localOriginFailures: {consecutive: 7}
          successRate: {minimumHosts: 5, requestVolume: 100, standardDeviationFactor: "1.9"}
          failurePercentage: {minimumHosts: 5, requestVolume: 50, threshold: 85}
from:
  - targetRef: {kind: Mesh}
    default:
      connectionLimits: {maxConnections: 512}
""",
    "MeshHealthCheck": """
targetRef: {kind: MeshService, name: web}
to:
  - targetRef: {kind: MeshService, name: api}
    default:
      interval: 10s
      timeout: 2s
      unhealthyThreshold: 3
      healthyThreshold: 1
      initialJitter: 5s
      intervalJitter: 1s
      intervalJitterPercent: 10
      healthyPanicThreshold: 60
      failTrafficOnPanic: false
      noTrafficInterval: 60s
      eventLogPath: /tmp/health-check.log
      alwaysLogHealthCheckFailures: true
      reuseConnection: true
      http:
        path: /healthz
        expectedStatuses: [200, 204]
        requestHeadersToAdd:
          set: [{name: x-health-check, value: gossamer}]
          add: [{name: x-probe, value: active}]
      tcp:
        disabled: false
        send: cGluZwo=
        receive: [cG9uZwo=]
      grpc: {disabled: true, serviceName: grpc.health.v1.Health, authority: api.mesh}
""",
    "MeshLoadBalancingStrategy": """
targetRef: {kind: Mesh}
to:
  - targetRef: {kind: MeshService, name: session-store}
    default:
      loadBalancer:
        type: RingHash
        ringHash:
          hashFunction: MurmurHash2
          minRingSize: 1024
          maxRingSize: 8192
          hashPolicies:
            - {type: Header, header: {name: x-user-id}, terminal: true}
            - {type: Cookie, cookie: {name: session, ttl: 1h, path: /}}
            - {type: QueryParameter, queryParameter: {name: user}}
            - {type: FilterState, filterState: {key: io.gossamer.user}}
            - {type: SourceIP}
      localityAwareness:
        localZone:
          affinityTags: [{key: k8s.io/node, weight: 90}, {key: k8s.io/az, weight: 9}]
        crossZone:
          failover:
            - from: {zones: [us-east-1]}
              to: {type: Only, zones: [us-east-2]}
            - to: {type: AnyExcept, zones: [eu-west-1]}
            - to: {type: Any}
          failoverThreshold: {percentage: "70.5"}
  - targetRef: {kind: MeshService, name: search}
    default:
      loadBalancer: {type: LeastRequest, leastRequest: {choiceCount: 4}}
  - targetRef: {kind: MeshService, name: cache}
    default:
      loadBalancer: {type: Maglev, maglev: {tableSize: 65537}}
""",
    "MeshHTTPRoute": """
targetRef: {kind: MeshService, name: frontend}
to:
  - targetRef: {kind: MeshService, name: backend}
    rules:
      - matches:
          - path: {type: PathPrefix, value: /api}
            method: GET
            headers:
              - {type: Exact, name: x-canary, value: "true"}
              - {type: Absent, name: x-debug}
            queryParams:
              - {type: RegularExpression, name: version, value: "^v[23]$"}
        default:
          filters:
            - type: RequestHeaderModifier
              requestHeaderModifier:
                set: [{name: x-route, value: canary}]
                remove: [x-internal]
            - type: ResponseHeaderModifier
              responseHeaderModifier: {add: [{name: x-served-by, value: backend-v2}]}
            - type: URLRewrite
              urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2/api}}
            - type: RequestMirror
              requestMirror:
                percentage: 5
                backendRef: {kind: MeshService, name: backend-shadow}
          backendRefs:
            - {kind: MeshServiceSubset, name: backend, tags: {version: v2}, weight: 90}
            - {kind: MeshService, name: backend, weight: 10, port: 8080}
      - matches: [{path: {type: Exact, value: /old-login}}]
        default:
          filters:
            - type: RequestRedirect
              requestRedirect:
                scheme: https
                hostname: login.example.com
                path: {type: ReplaceFullPath, replaceFullPath: /login}
                port: 443
                statusCode: 301
""",
    "MeshTCPRoute": """
targetRef: {kind: MeshService, name: frontend}
to:
  - targetRef: {kind: MeshService, name: redis}
    rules:
      - default:
          backendRefs:
            - {kind: MeshServiceSubset, name: redis, tags: {version: "7"}, weight: 80}
            - {kind: MeshService, name: redis-next, weight: 20}
""",
    "MeshRateLimit": """
targetRef: {kind: MeshService, name: public-api}
from:
  - targetRef: {kind: Mesh}
    default:
      local:
        http:
          requestRate: {num: 100, interval: 1s}
          onRateLimit:
            status: 429
            headers:
              set: [{name: x-ratelimited, value: "true"}]
        tcp:
          connectionRate: {num: 50, interval: 500ms}
rules:
  - default:
      local:
        http: {disabled: true}
""",
    "MeshFaultInjection": """
targetRef: {kind: MeshService, name: checkout}
from:
  - targetRef: {kind: MeshService, name: frontend}
    default:
      http:
        - abort: {httpStatus: 503, percentage: "2.5"}
        - delay: {value: 250ms, percentage: 10}
        - responseBandwidth: {limit: 64kbps, percentage: 5}
to:
  - targetRef: {kind: MeshService, name: payments}
    default:
      http:
        - abort: {httpStatus: 500, percentage: 1}
          delay: {value: 1s, percentage: 1}
""",
    "MeshPassthrough": """
targetRef: {kind: MeshService, name: web}
default:
  passthroughMode: Matched
  matches:
    - {type: Domain, value: api.example.com, protocol: tls}
    - {type: Domain, value: "*.internal.example.com", protocol: http, port: 8080}
    - {type: IP, value: 10.0.0.7, port: 5432}
    - {type: CIDR, value: 192.168.0.0/16}
""",
    "MeshTrace": """
targetRef: {kind: MeshSubset, tags: {team: shop}}
default:
  backends:
    - type: Zipkin
      zipkin:
        url: http://jaeger-collector.observability:9411/api/v2/spans
        traceId128bit: true
        apiVersion: httpJson
        sharedSpanContext: false
  sampling: {overall: 80, client: "12.5", random: 50}
  tags:
    - {name: team, literal: shop}
    - name: env
      header: {name: x-env, default: production}
""",
    "MeshAccessLog": """
targetRef: {kind: Mesh}
from:
  - targetRef: {kind: Mesh}
    default:
      backends:
        - file:
            path: /dev/stdout
            format:
              type: Json
              json:
                - {key: start_time, value: "%START_TIME%"}
                - {key: status, value: "%RESPONSE_CODE%"}
              omitEmptyValues: true
to:
  - targetRef: {kind: MeshService, name: backend}
    default:
      backends:
        - tcp:
            address: logstash.logging:5000
            format: {type: Plain, plain: "[%START_TIME%] %REQ(:METHOD)% %RESPONSE_CODE%"}
rules:
  - default:
      backends:
        - openTelemetry:
            endpoint: otel-collector.observability:4317
            body:
              kvlistValue:
                values:
                  - key: method
                    value: {stringValue: "%REQ(:METHOD)%"}
            attributes: [{key: mesh, value: "%KUMA_MESH%"}]
""",
    "MeshMetric": """
targetRef: {kind: Mesh}
default:
  sidecar:
    includeUnused: false
    profiles:
      appendProfiles: [{name: Basic}]
      exclude: [{type: Regex, match: "^envoy_cluster_lb_.*"}]
      include: [{type: Prefix, match: envoy_cluster_upstream_rq}]
  applications:
    - {name: app, path: /metrics/prometheus, port: 8080, address: 127.0.0.1}
  backends:
    - type: Prometheus
      prometheus: {clientId: main, port: 5670, path: /metrics, tls: {mode: ActiveMTLSBackend}}
    - type: OpenTelemetry
      openTelemetry: {endpoint: otel-collector.observability:4317, refreshInterval: 30s}
""",
}


def _doc(kind: str, spec: Any) -> dict[str, Any]:
    return {"type": kind, "name": f"{kind.lower()}-1", "mesh": "default", "spec": spec}

