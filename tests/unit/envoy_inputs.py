"""Inputs of the Envoy generation scenarios: the mesh and zone, the Dataplanes (YAML), the
allow-all MeshTrafficPermission, the destinations' endpoints, and ``Scenario`` itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from proxy.context import Endpoint, RemoteZone, Service

MESH = "default"


ZONE = "lab"


SVC = "gossamer.io/service"


PROTO = "gossamer.io/protocol"


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
