"""Bad documents of every policy kind, each with the exact field path and the message the
refusal must carry, for the policy-kind tests.
"""

from __future__ import annotations


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
     "spec.to[0].targetRef.kind",
     "to[].targetRef.kind must be one of ['MeshExternalService', 'MeshService']"),
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
    # MeshPassthrough
    ("MeshPassthrough", "targetRef: {kind: Mesh}", "spec.default", "required field"),
    ("MeshPassthrough", "default: {passthroughMode: Some}", "spec.default.passthroughMode",
     "Input should be"),
    ("MeshPassthrough", "default: {matches: [{type: Domain, value: api.example.com}]}",
     "spec.default.matches[0].protocol", "use protocol tls, http"),
    ("MeshPassthrough", "default: {matches: [{type: Domain, value: 'API.example.com', "
     "protocol: tls}]}", "spec.default.matches[0].value", "lower-case DNS name"),
    ("MeshPassthrough", "default: {matches: [{type: IP, value: 10.0.0.300}]}",
     "spec.default.matches[0].value", "an IP address"),
    ("MeshPassthrough", "default: {matches: [{type: CIDR, value: 10.0.0.1/8}]}",
     "spec.default.matches[0].value", "no host bits set"),
    ("MeshPassthrough", "default: {matches: [{type: IP, value: 10.0.0.1, port: 70000}]}",
     "spec.default.matches[0].port", "port"),
    ("MeshPassthrough", _to("{}") + "\ndefault: {}", "spec.to", "unknown field"),
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

