"""Proxy contexts that call MeshExternalServices, for the generation unit tests and the
``envoy --mode validate`` check: a sidecar with VIP outbounds to an HTTPS API (TLS
originated, by host name), a TCP database by IP, and policies aimed at them."""

from __future__ import annotations

import dataclasses

from proxy.context import ExternalService, ExternalTls, OutboundListener, ProxyContext, Service
from tests.unit.ca_material import make_ca, pem
from tests.unit.envoy_inputs import ALLOW_ALL, SERVICES, WEB_HTTP, Scenario
from tests.unit.envoy_scenarios import context

CA_PEM = pem(make_ca("outside-ca"))
HTTPBIN = "extsvc@httpbin"
PG = "extsvc@pg"

TIMEOUT = """
type: MeshTimeout
name: external
mesh: default
spec:
  targetRef: {kind: Mesh}
  to:
    - targetRef: {kind: MeshExternalService, name: httpbin}
      default: {connectionTimeout: 3s, http: {requestTimeout: 1500ms}}
"""
RETRY = """
type: MeshRetry
name: external
mesh: default
spec:
  targetRef: {kind: Mesh}
  to:
    - targetRef: {kind: MeshExternalService, name: httpbin}
      default: {http: {numRetries: 4}}
    - targetRef: {kind: MeshExternalService, name: pg}
      default: {tcp: {maxConnectAttempt: 3}}
"""


SECURED = ExternalTls(ca_pem=CA_PEM)

GUARDS = """
type: MeshCircuitBreaker
name: external
mesh: default
spec:
  to:
    - targetRef: {kind: MeshExternalService, name: httpbin}
      default:
        connectionLimits: {maxConnections: 7}
        outlierDetection: {disabled: false, interval: 5s}
---
type: MeshHealthCheck
name: external
mesh: default
spec:
  to:
    - targetRef: {kind: MeshExternalService, name: httpbin}
      default: {interval: 10s, timeout: 2s, http: {path: /health}}
---
type: MeshAccessLog
name: external
mesh: default
spec:
  to:
    - targetRef: {kind: MeshExternalService, name: pg}
      default: {backends: [{file: {path: /dev/stdout}}]}
"""
CIRCUIT_BREAKER, HEALTH_CHECK, ACCESS_LOG = GUARDS.strip().split("\n---\n")

REQUESTS = """
type: MeshHTTPRoute
name: external
mesh: default
spec:
  targetRef: {kind: Mesh}
  to:
    - targetRef: {kind: MeshExternalService, name: httpbin}
      rules:
        - matches: [{path: {type: PathPrefix, value: /v1}}]
          default:
            filters:
              - type: RequestHeaderModifier
                requestHeaderModifier: {set: [{name: x-api-version, value: "1"}]}
              - type: URLRewrite
                urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /api/v1}}
        - matches: [{path: {type: Exact, value: /old}}]
          default:
            filters:
              - type: RequestRedirect
                requestRedirect: {path: {type: ReplaceFullPath, replaceFullPath: /new}}
---
type: MeshFaultInjection
name: external
mesh: default
spec:
  targetRef: {kind: Mesh}
  to:
    - targetRef: {kind: MeshExternalService, name: httpbin}
      default: {http: [{abort: {httpStatus: 418, percentage: 100}}]}
---
type: MeshLoadBalancingStrategy
name: external
mesh: default
spec:
  targetRef: {kind: Mesh}
  to:
    - targetRef: {kind: MeshExternalService, name: httpbin}
      default: {loadBalancer: {type: LeastRequest}}
"""
ROUTE, FAULT, LOAD_BALANCING = REQUESTS.strip().split("\n---\n")


def httpbin(tls: ExternalTls | None = SECURED, protocol: str = "http",
            problem: str = "") -> Service:
    return Service(HTTPBIN, protocol, external=ExternalService(
        "httpbin", 80, protocol, (("httpbin.example.com", 443), ("httpbin-2.example.com", 443)),
        tls, problem))


PG_SERVICE = Service(PG, "tcp", external=ExternalService(
    "pg", 5432, "tcp", (("203.0.113.7", 5432), ("203.0.113.8", 5432))))

OUTBOUNDS = (OutboundListener(HTTPBIN, 80, "240.0.0.1", external=True),
             OutboundListener(PG, 5432, "240.0.0.2", external=True))


def external_ctx(*policies: str, service: Service | None = None,
                 dataplane: str = WEB_HTTP) -> ProxyContext:
    services = {**SERVICES, HTTPBIN: service or httpbin(), PG: PG_SERVICE}
    ctx = context(Scenario("external", dataplane, policies=(ALLOW_ALL, *policies),
                           services=services))
    return dataclasses.replace(ctx, outbounds=(*ctx.outbounds, *OUTBOUNDS))
