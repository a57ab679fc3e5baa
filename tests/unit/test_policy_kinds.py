"""Every policy kind: a realistic document parses and round-trips, and bad ones are
refused with the exact field path and a message a person can act on."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from gossamer.errors import InvalidResource
from gossamer.model.base import Scope, SyncDirection
from gossamer.model.registry import REGISTRY, parse_document, to_document

POLICY_KINDS = [
    "MeshAccessLog", "MeshCircuitBreaker", "MeshFaultInjection", "MeshHTTPRoute",
    "MeshHealthCheck", "MeshLoadBalancingStrategy", "MeshMetric", "MeshRateLimit",
    "MeshRetry", "MeshTCPRoute", "MeshTimeout", "MeshTrace", "MeshTrafficPermission",
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


def _assert_kept(original: Any, dumped: Any, path: str = "spec") -> None:
    """Everything the author wrote comes back (defaults may be added, nothing dropped)."""
    if isinstance(original, dict):
        assert isinstance(dumped, dict), path
        for key, value in original.items():
            assert key in dumped, f"{path}.{key} was dropped"
            _assert_kept(value, dumped[key], f"{path}.{key}")
    elif isinstance(original, list):
        assert isinstance(dumped, list) and len(dumped) == len(original), path
        for i, (a, b) in enumerate(zip(original, dumped, strict=True)):
            _assert_kept(a, b, f"{path}[{i}]")
    else:
        assert original == dumped, f"{path}: {original!r} became {dumped!r}"


def test_every_policy_kind_has_a_valid_example() -> None:
    assert sorted(VALID) == POLICY_KINDS


@pytest.mark.parametrize("kind", POLICY_KINDS)
def test_valid_document_round_trips(kind: str) -> None:
    spec = yaml.safe_load(VALID[kind])
    res = parse_document(_doc(kind, spec))
    assert res.type == kind
    out = to_document(res)
    _assert_kept(spec, out["spec"])
    again = parse_document(yaml.safe_load(yaml.safe_dump(out)))
    assert again.spec == res.spec
    assert to_document(again) == out


def test_registry_holds_every_policy_kind_once() -> None:
    policies = REGISTRY.policies()
    assert sorted(d.name for d in policies) == POLICY_KINDS
    for keys in ([d.path for d in policies], [d.noun for d in policies],
                 [d.alias for d in policies]):
        assert len(set(keys)) == len(POLICY_KINDS)
    for desc in policies:
        assert desc.scope is Scope.MESH
        assert desc.sync is SyncDirection.GLOBAL_TO_ZONES
        assert desc.noun == desc.name.lower()
        assert desc.path.islower() and desc.path.startswith(desc.noun[:-1])
        assert desc.description
        for key in (desc.name, desc.noun, desc.path, desc.alias):
            assert REGISTRY.get(key) is desc


def _to(default: str, target: str = "{kind: Mesh}") -> str:
    return f"to: [{{targetRef: {target}, default: {default}}}]"


def _from(default: str, target: str = "{kind: Mesh}") -> str:
    return f"from: [{{targetRef: {target}, default: {default}}}]"


SVC = "{kind: MeshService, name: backend}"

# (kind, spec as YAML, exact field path, fragment of the message)
INVALID: list[tuple[str, str, str, str]] = [
    # MeshTimeout
    ("MeshTimeout", "targetRef: {kind: Mesh}", "spec", "at least one of to, from, rules"),
    ("MeshTimeout", _to("{connectionTimeout: 5}"), "spec.to[0].default.connectionTimeout",
     "expected a duration"),
    ("MeshTimeout", _to("{idleTimeout: 1s}", "{kind: MeshSubset, tags: {a: b}}"), "spec.to[0]",
     "to[].targetRef.kind must be one of"),
    ("MeshTimeout", _to("{http: {requestTimeoutt: 1s}}"),
     "spec.to[0].default.http.requestTimeoutt", "unknown field"),
    # MeshTrafficPermission
    ("MeshTrafficPermission", _from("{action: Permit}"), "spec.from[0].default.action",
     "'Allow', 'Deny' or 'AllowWithShadowDeny'"),
    ("MeshTrafficPermission", _from("{}"), "spec.from[0].default.action", "required field"),
    ("MeshTrafficPermission", _to("{action: Allow}"), "spec.to", "unknown field"),
    ("MeshTrafficPermission", "rules: []", "spec", "at least one of from, rules"),
    ("MeshTrafficPermission", _from("{action: Allow}", "{kind: Dataplane, name: dp-1}"),
     "spec.from[0]", "from[].targetRef.kind must be one of"),
    # MeshRetry
    ("MeshRetry", _to("{http: {numRetries: 101}}"), "spec.to[0].default.http.numRetries",
     "less than or equal to 100"),
    ("MeshRetry", _to("{http: {numRetries: true}}"), "spec.to[0].default.http.numRetries",
     "valid integer"),
    ("MeshRetry", _to("{http: {retryOn: [5xx, sometimes]}}"),
     "spec.to[0].default.http.retryOn[1]", "unknown retry condition 'sometimes'"),
    ("MeshRetry", _to("{http: {retryOn: [503]}}"), "spec.to[0].default.http.retryOn[0]",
     'quote status codes in retryOn, like "503"'),
    ("MeshRetry", _to("{http: {retryOn: [retriable-status-codes]}}"),
     "spec.to[0].default.http.retryOn", "needs at least one status code"),
    ("MeshRetry", _to("{http: {retryOn: [reset, reset]}}"),
     "spec.to[0].default.http.retryOn[1]", "'reset' is listed twice"),
    ("MeshRetry", _to("{http: {backOff: {baseInterval: 1s, maxInterval: 100ms}}}"),
     "spec.to[0].default.http.backOff.maxInterval", "must not be shorter than baseInterval"),
    ("MeshRetry", _to("{http: {perTryTimeout: soon}}"),
     "spec.to[0].default.http.perTryTimeout", "expected a duration"),
    ("MeshRetry", _to("{http: {retriableResponseHeaders: [{type: Present, name: x-a, value: b}]}}"),
     "spec.to[0].default.http.retriableResponseHeaders[0].value",
     "a header match of type Present takes no value"),
    ("MeshRetry", _to("{http: {retriableRequestHeaders: [{type: Exact, name: 'bad name'}]}}"),
     "spec.to[0].default.http.retriableRequestHeaders[0].name", "expected an HTTP header name"),
    ("MeshRetry", _to("{tcp: {maxConnectAttempt: 0}}"),
     "spec.to[0].default.tcp.maxConnectAttempt", "greater than or equal to 1"),
    ("MeshRetry", _to("{grpc: {retryOn: [5xx]}}"), "spec.to[0].default.grpc.retryOn[0]",
     "'canceled'"),
    ("MeshRetry", _to("{}"), "spec.to[0].default", "at least one of tcp, http or grpc"),
    ("MeshRetry", _to("{http: {hostSelection: [{predicate: OmitHostMetadata}]}}"),
     "spec.to[0].default.http.hostSelection[0].tags", "required with OmitHostMetadata"),
    ("MeshRetry", _from("{tcp: {maxConnectAttempt: 1}}"), "spec.from", "unknown field"),
    # MeshCircuitBreaker
    ("MeshCircuitBreaker", _to("{connectionLimits: {maxConnections: 0}}"),
     "spec.to[0].default.connectionLimits.maxConnections", "greater than or equal to 1"),
    ("MeshCircuitBreaker", _to("{outlierDetection: {maxEjectionPercent: 150}}"),
     "spec.to[0].default.outlierDetection.maxEjectionPercent", "less than or equal to 100"),
    ("MeshCircuitBreaker",
     _to("{outlierDetection: {detectors: {localOriginFailures: {consecutive: 3}}}}"),
     "spec.to[0].default.outlierDetection.detectors.localOriginFailures",
     "needs splitExternalAndLocalErrors: true"),
    ("MeshCircuitBreaker",
     _from("{outlierDetection: {detectors: {successRate: {standardDeviationFactor: 0}}}}"),
     "spec.from[0].default.outlierDetection.detectors.successRate.standardDeviationFactor",
     "expected a number above 0"),
    ("MeshCircuitBreaker",
     _to("{outlierDetection: {detectors: {failurePercentage: {threshold: 101}}}}"),
     "spec.to[0].default.outlierDetection.detectors.failurePercentage.threshold",
     "less than or equal to 100"),
    ("MeshCircuitBreaker", _to("{outlierDetection: {baseEjectionTime: 30}}"),
     "spec.to[0].default.outlierDetection.baseEjectionTime", "expected a duration"),
    ("MeshCircuitBreaker", _to("{}"), "spec.to[0].default",
     "needs connectionLimits or outlierDetection"),
    # MeshHealthCheck
    ("MeshHealthCheck", _to("{interval: 0s}"), "spec.to[0].default.interval",
     "must be longer than zero"),
    ("MeshHealthCheck", _to("{http: {expectedStatuses: [200, 600]}}"),
     "spec.to[0].default.http.expectedStatuses[1]", "less than or equal to 599"),
    ("MeshHealthCheck", _to("{http: {path: healthz}}"), "spec.to[0].default.http.path",
     "expected a URL path"),
    ("MeshHealthCheck", _to("{tcp: {send: 'not base64!'}}"), "spec.to[0].default.tcp.send",
     "expected base64"),
    ("MeshHealthCheck", _to("{unhealthyThreshold: 0}"),
     "spec.to[0].default.unhealthyThreshold", "greater than or equal to 1"),
    ("MeshHealthCheck", _to("{healthyPanicThreshold: 101}"),
     "spec.to[0].default.healthyPanicThreshold", "expected a percentage"),
    ("MeshHealthCheck", _to("{http: {requestHeadersToAdd: {remove: [x-a]}}}"),
     "spec.to[0].default.http.requestHeadersToAdd.remove", "only set or add headers"),
    ("MeshHealthCheck", _to("{grpc: {disabled: 'yes'}}"), "spec.to[0].default.grpc.disabled",
     "valid boolean"),
    # MeshLoadBalancingStrategy
    ("MeshLoadBalancingStrategy", _to("{loadBalancer: {type: Fastest}}"),
     "spec.to[0].default.loadBalancer.type", "'RoundRobin'"),
    ("MeshLoadBalancingStrategy",
     _to("{loadBalancer: {type: RoundRobin, ringHash: {minRingSize: 10}}}"),
     "spec.to[0].default.loadBalancer.ringHash",
     "a load balancer of type RoundRobin takes no ringHash"),
    ("MeshLoadBalancingStrategy",
     _to("{loadBalancer: {type: RingHash, ringHash: {minRingSize: 2048, maxRingSize: 1024}}}"),
     "spec.to[0].default.loadBalancer.ringHash.minRingSize", "not be larger than maxRingSize"),
    ("MeshLoadBalancingStrategy",
     _to("{loadBalancer: {type: RingHash, ringHash: {hashPolicies: [{type: Header}]}}}"),
     "spec.to[0].default.loadBalancer.ringHash.hashPolicies[0].header",
     "a hash policy of type Header needs header"),
    ("MeshLoadBalancingStrategy",
     _to("{loadBalancer: {type: RingHash, ringHash: {hashPolicies: "
         "[{type: SourceIP, cookie: {name: s}}]}}}"),
     "spec.to[0].default.loadBalancer.ringHash.hashPolicies[0].cookie",
     "a hash policy of type SourceIP takes no cookie"),
    ("MeshLoadBalancingStrategy",
     _to("{loadBalancer: {type: LeastRequest, leastRequest: {choiceCount: 1}}}"),
     "spec.to[0].default.loadBalancer.leastRequest.choiceCount", "greater than or equal to 2"),
    ("MeshLoadBalancingStrategy", _to("{loadBalancer: {type: Maglev, maglev: {tableSize: 1000}}}"),
     "spec.to[0].default.loadBalancer.maglev.tableSize", "must be a prime number"),
    ("MeshLoadBalancingStrategy",
     _to("{localityAwareness: {crossZone: {failover: [{to: {type: Only}}]}}}"),
     "spec.to[0].default.localityAwareness.crossZone.failover[0].to.zones",
     "failover to Only needs zones"),
    ("MeshLoadBalancingStrategy",
     _to("{localityAwareness: {crossZone: {failover: [{to: {type: None, zones: [east]}}]}}}"),
     "spec.to[0].default.localityAwareness.crossZone.failover[0].to.zones",
     "failover to None takes no zones"),
    ("MeshLoadBalancingStrategy",
     _to("{localityAwareness: {crossZone: {failover: [{from: {zones: [East_1]}, "
         "to: {type: Any}}]}}}"),
     "spec.to[0].default.localityAwareness.crossZone.failover[0].from.zones[0]",
     "expected lower-case letters"),
    ("MeshLoadBalancingStrategy",
     _to("{localityAwareness: {crossZone: {failoverThreshold: {percentage: 101}}}}"),
     "spec.to[0].default.localityAwareness.crossZone.failoverThreshold.percentage",
     "expected a percentage"),
    ("MeshLoadBalancingStrategy",
     _to("{localityAwareness: {localZone: {affinityTags: [{key: a, weight: 9}, {key: b}]}}}"),
     "spec.to[0].default.localityAwareness.localZone.affinityTags",
     "give a weight to every affinity tag or to none"),
    # MeshHTTPRoute
    ("MeshHTTPRoute", "to: [{targetRef: {kind: Mesh}, rules: "
     "[{matches: [{method: GET}], default: {}}]}]",
     "spec.to[0].targetRef.kind", "to[].targetRef.kind must be one of ['MeshService']"),
    ("MeshHTTPRoute", f"to: [{{targetRef: {SVC}, default: {{}}}}]", "spec.to[0].rules",
     "required field"),
    ("MeshHTTPRoute", f"to: [{{targetRef: {SVC}, rules: [{{matches: "
     "[{path: {type: Exact, value: api}}], default: {}}]}]",
     "spec.to[0].rules[0].matches[0].path.value", "a path must start with '/'"),
    ("MeshHTTPRoute", f"to: [{{targetRef: {SVC}, rules: [{{matches: "
     "[{path: {type: PathPrefix, value: /api/}}], default: {}}]}]",
     "spec.to[0].rules[0].matches[0].path.value", "must not end with '/'"),
    ("MeshHTTPRoute", f"to: [{{targetRef: {SVC}, rules: [{{matches: "
     "[{path: {type: RegularExpression, value: '(?!admin)'}}], default: {}}]}]",
     "spec.to[0].rules[0].matches[0].path.value", "look-around"),
    ("MeshHTTPRoute", f"to: [{{targetRef: {SVC}, rules: [{{matches: [{{queryParams: "
     "[{type: RegularExpression, name: q, value: 'a{1,5000}'}]}], default: {}}]}]",
     "spec.to[0].rules[0].matches[0].queryParams[0].value", "repetition counts above 1000"),
    ("MeshHTTPRoute", f"to: [{{targetRef: {SVC}, rules: [{{matches: [{{headers: "
     f"[{{type: RegularExpression, name: x-a, value: '{'(' * 510}{')' * 510}'}}]}}], "
     "default: {}}]}]",
     "spec.to[0].rules[0].matches[0].headers[0].value", "nested too deeply"),
    ("MeshHTTPRoute", f"to: [{{targetRef: {SVC}, rules: [{{matches: "
     "[{headers: [{type: Present, name: x-a, value: b}]}], default: {}}]}]",
     "spec.to[0].rules[0].matches[0].headers[0].value",
     "a header match of type Present takes no value"),
    ("MeshHTTPRoute", f"to: [{{targetRef: {SVC}, rules: [{{matches: "
     "[{headers: [{type: Prefix, name: x-a}]}], default: {}}]}]",
     "spec.to[0].rules[0].matches[0].headers[0].value",
     "a header match of type Prefix needs a value"),
    ("MeshHTTPRoute", f"to: [{{targetRef: {SVC}, rules: [{{matches: [{{method: FETCH}}], "
     "default: {}}]}]", "spec.to[0].rules[0].matches[0].method", "'GET'"),
    ("MeshHTTPRoute", f"to: [{{targetRef: {SVC}, rules: [{{matches: [{{method: GET}}], "
     "default: {backendRefs: [{kind: MeshServiceSubset, name: backend}]}}]}]",
     "spec.to[0].rules[0].default.backendRefs[0].tags",
     "a backendRef of kind MeshServiceSubset needs tags"),
    ("MeshHTTPRoute", f"to: [{{targetRef: {SVC}, rules: [{{matches: [{{method: GET}}], "
     "default: {backendRefs: [{kind: MeshService, name: backend, weight: -5}]}}]}]",
     "spec.to[0].rules[0].default.backendRefs[0].weight", "greater than or equal to 0"),
    ("MeshHTTPRoute", f"to: [{{targetRef: {SVC}, rules: [{{matches: [{{method: GET}}], "
     "default: {filters: [{type: RequestHeaderModifier}]}}]}]",
     "spec.to[0].rules[0].default.filters[0].requestHeaderModifier",
     "a filter of type RequestHeaderModifier needs requestHeaderModifier"),
    ("MeshHTTPRoute", f"to: [{{targetRef: {SVC}, rules: [{{matches: [{{method: GET}}], "
     "default: {filters: [{type: RequestRedirect, requestRedirect: {statusCode: 200}}]}}]}]",
     "spec.to[0].rules[0].default.filters[0].requestRedirect.statusCode",
     "expected one of 301, 302, 303, 307, 308"),
    ("MeshHTTPRoute", f"to: [{{targetRef: {SVC}, rules: [{{matches: [{{method: GET}}], "
     "default: {filters: [{type: URLRewrite, urlRewrite: {path: "
     "{type: ReplacePrefixMatch, replacePrefixMatch: /v2}}}]}}]}]",
     "spec.to[0].rules[0].default.filters[0]",
     "ReplacePrefixMatch needs every match of the rule to have a PathPrefix path"),
    ("MeshHTTPRoute", f"to: [{{targetRef: {SVC}, rules: [{{matches: [{{method: GET}}], "
     "default: {filters: [{type: RequestRedirect, requestRedirect: {}}], "
     "backendRefs: [{kind: MeshService, name: backend}]}}]}]",
     "spec.to[0].rules[0].default.backendRefs", "a rule that redirects sends nothing"),
    ("MeshHTTPRoute", f"to: [{{targetRef: {SVC}, rules: [{{matches: [{{method: GET}}], "
     "default: {filters: [{type: RequestHeaderModifier, requestHeaderModifier: "
     "{set: [{name: x-a, value: '1'}], remove: [X-A]}}]}}]}]",
     "spec.to[0].rules[0].default.filters[0].requestHeaderModifier.remove[0]",
     "header 'X-A' is already modified in set"),
    # MeshTCPRoute
    ("MeshTCPRoute", f"to: [{{targetRef: {SVC}, rules: []}}]", "spec.to[0].rules",
     "at least 1 item"),
    ("MeshTCPRoute", f"to: [{{targetRef: {SVC}, rules: [{{default: {{backendRefs: []}}}}]}}]",
     "spec.to[0].rules[0].default.backendRefs", "at least 1 item"),
    ("MeshTCPRoute", f"to: [{{targetRef: {SVC}, rules: [{{default: {{backendRefs: "
     "[{kind: Mesh, name: backend}]}}]}]",
     "spec.to[0].rules[0].default.backendRefs[0].kind", "'MeshService' or 'MeshServiceSubset'"),
    ("MeshTCPRoute", f"to: [{{targetRef: {SVC}, rules: [{{default: {{backendRefs: "
     "[{kind: MeshService, name: backend, tags: {v: '1'}}]}}]}]",
     "spec.to[0].rules[0].default.backendRefs[0].tags",
     "a backendRef of kind MeshService takes no tags"),
    ("MeshTCPRoute", f"to: [{{targetRef: {SVC}, rules: [{{default: {{backendRefs: "
     "[{kind: MeshService, name: backend, port: 70000}]}}]}]",
     "spec.to[0].rules[0].default.backendRefs[0].port", "expected a port"),
    # MeshRateLimit
    ("MeshRateLimit", _from("{local: {http: {requestRate: {num: 0, interval: 1s}}}}"),
     "spec.from[0].default.local.http.requestRate.num", "greater than or equal to 1"),
    ("MeshRateLimit", _from("{local: {http: {requestRate: {num: 10, interval: 10ms}}}}"),
     "spec.from[0].default.local.http.requestRate.interval", "must be at least 50ms"),
    ("MeshRateLimit", _from("{local: {http: {}}}"), "spec.from[0].default.local.http.requestRate",
     "required unless disabled is true"),
    ("MeshRateLimit", _from("{local: {tcp: {disabled: false}}}"),
     "spec.from[0].default.local.tcp.connectionRate", "required unless disabled is true"),
    ("MeshRateLimit", _from("{local: {http: {disabled: true, onRateLimit: {status: 299}}}}"),
     "spec.from[0].default.local.http.onRateLimit.status", "expected a 4xx or 5xx status"),
    ("MeshRateLimit", _from("{local: {}}"), "spec.from[0].default.local",
     "local needs http or tcp"),
    ("MeshRateLimit", _from("{local: {tcp: {disabled: true}}}", SVC),
     "spec.from[0].targetRef.kind", "MeshRateLimit from[].targetRef.kind must be Mesh"),
    ("MeshRateLimit", _to("{local: {tcp: {disabled: true}}}"), "spec.to", "unknown field"),
    # MeshFaultInjection
    ("MeshFaultInjection", _from("{http: [{abort: {httpStatus: 700, percentage: 5}}]}"),
     "spec.from[0].default.http[0].abort.httpStatus", "less than or equal to 599"),
    ("MeshFaultInjection", _from("{http: [{abort: {httpStatus: 503, percentage: 105}}]}"),
     "spec.from[0].default.http[0].abort.percentage", "expected a percentage"),
    ("MeshFaultInjection", _to("{http: [{delay: {value: 5, percentage: 5}}]}"),
     "spec.to[0].default.http[0].delay.value", "expected a duration"),
    ("MeshFaultInjection", _to("{http: [{responseBandwidth: {limit: fast, percentage: 5}}]}"),
     "spec.to[0].default.http[0].responseBandwidth.limit", 'expected a bandwidth like "50kbps"'),
    ("MeshFaultInjection", _to("{http: [{}]}"), "spec.to[0].default.http[0]",
     "at least one of abort, delay or responseBandwidth"),
    ("MeshFaultInjection", _to("{http: []}"), "spec.to[0].default.http", "at least 1 item"),
    # MeshTrace
    ("MeshTrace", "targetRef: {kind: Mesh}", "spec.default", "required field"),
    ("MeshTrace", _to("{}") + "\ndefault: {}", "spec.to", "unknown field"),
    ("MeshTrace", "default: {backends: [{type: Zipkin, zipkin: {url: 'http://a:9411'}}, "
     "{type: Datadog, datadog: {url: 'http://b:8126'}}]}", "spec.default.backends",
     "at most 1 item"),
    ("MeshTrace", "default: {backends: [{type: Zipkin, openTelemetry: {endpoint: 'a:4317'}}]}",
     "spec.default.backends[0].openTelemetry", "a backend of type Zipkin takes no openTelemetry"),
    ("MeshTrace", "default: {backends: [{type: OpenTelemetry}]}",
     "spec.default.backends[0].openTelemetry", "needs openTelemetry"),
    ("MeshTrace", "default: {backends: [{type: OpenTelemetry, openTelemetry: "
     "{endpoint: collector}}]}", "spec.default.backends[0].openTelemetry.endpoint",
     'expected "host:port"'),
    ("MeshTrace", "default: {backends: [{type: Zipkin, zipkin: {url: 'ftp://zipkin/x'}}]}",
     "spec.default.backends[0].zipkin.url", "expected an http:// or https:// URL"),
    ("MeshTrace", "default: {sampling: {overall: 120}}", "spec.default.sampling.overall",
     "expected a percentage"),
    ("MeshTrace", "default: {tags: [{name: team}]}", "spec.default.tags[0].literal",
     "exactly one of literal or header"),
    ("MeshTrace", "default: {tags: [{name: a, literal: x}, {name: a, literal: y}]}",
     "spec.default.tags[1].name", "tag 'a' is defined twice"),
    # MeshAccessLog
    ("MeshAccessLog", _from("{backends: [{}]}"), "spec.from[0].default.backends[0]",
     "exactly one of file, tcp or openTelemetry"),
    ("MeshAccessLog", _from("{backends: [{file: {path: /a}, tcp: {address: 'b:5000'}}]}"),
     "spec.from[0].default.backends[0]", "exactly one of file, tcp or openTelemetry"),
    ("MeshAccessLog", _to("{backends: [{file: {path: logs/access.log}}]}"),
     "spec.to[0].default.backends[0].file.path", "expected an absolute file path"),
    ("MeshAccessLog", _to("{backends: [{file: {path: /a, format: {type: Json, plain: x}}}]}"),
     "spec.to[0].default.backends[0].file.format.json", "a format of type Json needs json"),
    ("MeshAccessLog", "rules: [{default: {backends: [{tcp: {address: 'l:1', format: "
     "{type: Plain, plain: x, json: [{key: a, value: b}]}}}]}}]",
     "spec.rules[0].default.backends[0].tcp.format.json", "a format of type Plain takes no json"),
    ("MeshAccessLog", _to("{backends: [{tcp: {address: 'logstash:99999'}}]}"),
     "spec.to[0].default.backends[0].tcp.address", 'expected "host:port"'),
    ("MeshAccessLog", _to("{backends: [{openTelemetry: {endpoint: 'o:4317', body: "
     + "[" * 20 + "1" + "]" * 20 + "}}]}"),
     "spec.to[0].default.backends[0].openTelemetry.body", "deeper than 16 levels"),
    ("MeshAccessLog", _to("{backends: []}"), "spec.to[0].default.backends", "at least 1 item"),
    # MeshMetric
    ("MeshMetric", "targetRef: {kind: Mesh}", "spec.default", "required field"),
    ("MeshMetric", _from("{}") + "\ndefault: {}", "spec.from", "unknown field"),
    ("MeshMetric", "default: {applications: [{port: 0}]}", "spec.default.applications[0].port",
     "expected a port"),
    ("MeshMetric", "default: {applications: [{port: 80, address: 'not a host'}]}",
     "spec.default.applications[0].address", "expected an IP address or a DNS name"),
    ("MeshMetric", "default: {backends: [{type: Prometheus, prometheus: {tls: {mode: On}}}]}",
     "spec.default.backends[0].prometheus.tls.mode", "'Disabled'"),
    ("MeshMetric", "default: {backends: [{type: OpenTelemetry}]}",
     "spec.default.backends[0].openTelemetry", "needs openTelemetry"),
    ("MeshMetric", "default: {backends: [{type: Prometheus, prometheus: {port: 5670}}, "
     "{type: Prometheus, prometheus: {port: 5670}}]}",
     "spec.default.backends[1].prometheus.port", "already uses port 5670"),
    ("MeshMetric", "default: {sidecar: {profiles: {exclude: [{type: Regex, match: '(unclosed'}]}}}",
     "spec.default.sidecar.profiles.exclude[0].match", "invalid regex"),
    ("MeshMetric", "default: {backends: [{type: OpenTelemetry, openTelemetry: "
     "{endpoint: 'o:4317', refreshInterval: 100ms}}]}",
     "spec.default.backends[0].openTelemetry.refreshInterval", "must be at least 1s"),
]


def test_every_policy_kind_has_invalid_cases() -> None:
    assert sorted({case[0] for case in INVALID}) == POLICY_KINDS


@pytest.mark.parametrize(("kind", "spec", "path", "fragment"), INVALID,
                         ids=[f"{c[0]}:{c[2]}" for c in INVALID])
def test_invalid_document_names_the_field(kind: str, spec: str, path: str,
                                          fragment: str) -> None:
    with pytest.raises(InvalidResource) as info:
        parse_document(_doc(kind, yaml.safe_load(spec)))
    errors = {e.path: e.message for e in info.value.field_errors}
    assert path in errors, f"no error at {path}; got {errors}"
    assert fragment in errors[path], errors[path]


# YAML's scalars and containers, including the awkward ones (NaN, huge ints, odd keys).
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats()
    | st.text(max_size=20) | st.sampled_from(["5s", "0s", "/", "a:1", "Mesh", "503", "-1"]),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, (*prefix, i))
    return out


def _replace(node: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    copy = dict(node) if isinstance(node, dict) else list(node)
    copy[path[0]] = _replace(node[path[0]], path[1:], value)
    return copy


_SPECS = {kind: yaml.safe_load(text) for kind, text in VALID.items()}
_PATHS = {kind: _paths(spec) for kind, spec in _SPECS.items()}


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_corruption_parses_or_raises_invalid_resource(data: st.DataObject) -> None:
    """Like h11's fuzz invariant: garbage anywhere in a spec is the caller's error, never
    a crash (a TypeError from a validator would surface as a 500)."""
    kind = data.draw(st.sampled_from(POLICY_KINDS))
    spec = _SPECS[kind]
    path = data.draw(st.sampled_from(_PATHS[kind]))
    corrupted = _replace(spec, path, data.draw(_JSON))
    try:
        res = parse_document(_doc(kind, corrupted))
    except InvalidResource as exc:
        assert exc.field_errors
    else:
        assert parse_document(to_document(res)).spec == res.spec
