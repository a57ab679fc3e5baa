"""One realistic document of every kind, as ``gossamer apply -f`` takes them, for the CLI
tests (a provided CA backend's material is a real CA, checked when it is applied).
"""

from __future__ import annotations

import base64
import datetime as dt

from gossamer.pki.certs import new_root_ca
from tests.integration.cli_env import MESH

# A real CA: a provided backend's material is checked when it is applied.
CORP_CA = new_root_ca("Corp CA", dt.datetime.now(dt.UTC), dt.timedelta(days=365))


PEM = base64.b64encode(CORP_CA.cert_pem())


EVERY_KIND = f"""\
type: Mesh
name: {MESH}
labels: {{team: platform}}
mtls:
  enabledBackend: ca-1
  mode: permissive
  backends:
  - name: ca-1
    type: builtin
    dpCert: {{rotation: {{expiration: 12h}}}}
    conf: {{caCert: {{keyType: ecdsa-p384, expiration: 43800h}}}}
  - name: corp-ca
    type: provided
    conf:
      cert: {{secretRef: corp-ca-cert}}
      key: {{secretRef: corp-ca-key}}
---
type: Secret
name: corp-ca-cert
mesh: {MESH}
data: {PEM.decode()}
---
type: GlobalSecret
name: corp-ca-key
data: {base64.b64encode(CORP_CA.key_pem()).decode()}
---
type: GlobalSecret
name: vault-approle
labels: {{purpose: vault}}
data: {base64.b64encode(b"s.0123456789abcdef").decode()}
---
type: Zone
name: us-east-1
enabled: false
---
type: ZoneIngress
name: us-east-1-ingress
zone: us-east-1
networking:
  address: 10.0.1.10
  port: 10001
  advertisedAddress: ingress.us-east-1.example.com
  advertisedPort: 443
availableServices:
- mesh: {MESH}
  tags: {{gossamer.io/service: backend, version: v2}}
  instances: 3
---
type: ZoneEgress
name: us-east-1-egress
zone: us-east-1
networking:
  address: 0.0.0.0
  port: 10002
  advertisedAddress: 10.0.1.11
meshes: [{MESH}]
---
type: VirtualIP
name: web
mesh: {MESH}
labels: {{gossamer.io/service: web}}
ip: 240.0.0.7
---
type: Dataplane
name: web-7d9f
mesh: {MESH}
labels: {{app: web}}
networking:
  address: 10.0.0.5
  inbound:
  - port: 10010
    servicePort: 8080
    tags: {{gossamer.io/service: web, gossamer.io/protocol: http, version: "1"}}
  outbound:
  - port: 10020
    tags: {{gossamer.io/service: backend}}
  admin: {{port: 9901}}
---
type: MeshTrafficPermission
name: backend-from-web
mesh: {MESH}
spec:
  targetRef: {{kind: MeshService, name: backend}}
  from:
  - targetRef: {{kind: MeshService, name: web}}
    default: {{action: Allow}}
  - targetRef: {{kind: MeshSubset, tags: {{env: dev}}}}
    default: {{action: Deny}}
---
type: MeshTimeout
name: backend-timeouts
mesh: {MESH}
spec:
  targetRef: {{kind: MeshService, name: web}}
  to:
  - targetRef: {{kind: MeshService, name: backend}}
    default:
      connectionTimeout: 2s
      idleTimeout: 1h
      http: {{requestTimeout: 15s, streamIdleTimeout: 30m}}
---
type: MeshRetry
name: backend-retries
mesh: {MESH}
spec:
  targetRef: {{kind: Mesh}}
  to:
  - targetRef: {{kind: MeshService, name: backend}}
    default:
      tcp: {{maxConnectAttempt: 3}}
      http:
        numRetries: 5
        perTryTimeout: 250ms
        backOff: {{baseInterval: 25ms, maxInterval: 1s}}
        retryOn: [5xx, reset, connect-failure]
---
type: MeshCircuitBreaker
name: backend-breaker
mesh: {MESH}
spec:
  targetRef: {{kind: Mesh}}
  to:
  - targetRef: {{kind: MeshService, name: backend}}
    default:
      connectionLimits: {{maxConnections: 1024, maxPendingRequests: 128}}
      outlierDetection:
        interval: 5s
        baseEjectionTime: 30s
        maxEjectionPercent: 20
        detectors:
          totalFailures: {{consecutive: 10}}
---
type: MeshHealthCheck
name: backend-health
mesh: {MESH}
spec:
  targetRef: {{kind: Mesh}}
  to:
  - targetRef: {{kind: MeshService, name: backend}}
    default:
      interval: 10s
      timeout: 2s
      unhealthyThreshold: 3
      healthyThreshold: 1
      http: {{path: /healthz, expectedStatuses: [200]}}
---
type: MeshLoadBalancingStrategy
name: backend-lb
mesh: {MESH}
spec:
  targetRef: {{kind: Mesh}}
  to:
  - targetRef: {{kind: MeshService, name: backend}}
    default:
      loadBalancer: {{type: LeastRequest, leastRequest: {{choiceCount: 4}}}}
      localityAwareness:
        crossZone:
          failover:
          - from: {{zones: [us-east-1]}}
            to: {{type: Only, zones: [us-east-2]}}
          - to: {{type: Any}}
---
type: MeshHTTPRoute
name: backend-canary
mesh: {MESH}
spec:
  targetRef: {{kind: MeshService, name: web}}
  to:
  - targetRef: {{kind: MeshService, name: backend}}
    rules:
    - matches:
      - path: {{type: PathPrefix, value: /api}}
        headers: [{{type: Exact, name: x-canary, value: "true"}}]
      default:
        backendRefs:
        - {{kind: MeshServiceSubset, name: backend, tags: {{version: v2}}, weight: 90}}
        - {{kind: MeshService, name: backend, weight: 10}}
---
type: MeshTCPRoute
name: redis-split
mesh: {MESH}
spec:
  targetRef: {{kind: MeshService, name: web}}
  to:
  - targetRef: {{kind: MeshService, name: redis}}
    rules:
    - default:
        backendRefs:
        - {{kind: MeshService, name: redis, weight: 80}}
        - {{kind: MeshService, name: redis-next, weight: 20}}
---
type: MeshRateLimit
name: public-api-limit
mesh: {MESH}
spec:
  targetRef: {{kind: MeshService, name: backend}}
  from:
  - targetRef: {{kind: Mesh}}
    default:
      local:
        http:
          requestRate: {{num: 100, interval: 1s}}
          onRateLimit: {{status: 429}}
---
type: MeshFaultInjection
name: backend-chaos
mesh: {MESH}
spec:
  targetRef: {{kind: MeshService, name: backend}}
  from:
  - targetRef: {{kind: MeshService, name: web}}
    default:
      http:
      - abort: {{httpStatus: 503, percentage: "2.5"}}
      - delay: {{value: 250ms, percentage: 10}}
---
type: MeshPassthrough
name: outside
mesh: {MESH}
spec:
  targetRef: {{kind: MeshService, name: web}}
  default:
    matches:
    - {{type: Domain, value: api.example.com, protocol: tls}}
    - {{type: CIDR, value: 10.8.0.0/16, port: 5432}}
---
type: MeshExternalService
name: httpbin
mesh: {MESH}
spec:
  match: {{port: 80, protocol: http}}
  endpoints:
  - {{address: httpbin.example.com, port: 443}}
  tls:
    enabled: true
    version: {{min: TLS12}}
    verification:
      serverName: httpbin.example.com
      caCert: {{secretRef: corp-ca-cert}}
  zones: [zone-1]
---
type: MeshTrace
name: tracing
mesh: {MESH}
spec:
  targetRef: {{kind: Mesh}}
  default:
    backends:
    - type: Zipkin
      zipkin: {{url: "http://jaeger.observability:9411/api/v2/spans"}}
    sampling: {{overall: 80}}
---
type: MeshAccessLog
name: access-logs
mesh: {MESH}
spec:
  targetRef: {{kind: Mesh}}
  from:
  - targetRef: {{kind: Mesh}}
    default:
      backends:
      - file:
          path: /dev/stdout
          format: {{type: Plain, plain: "[%START_TIME%] %RESPONSE_CODE%"}}
---
type: MeshMetric
name: metrics
mesh: {MESH}
spec:
  targetRef: {{kind: Mesh}}
  default:
    backends:
    - type: Prometheus
      prometheus: {{port: 5670, path: /metrics}}
"""

