"""Zone-ingress generation scenarios, shared by the ingress unit tests and
``tests/integration/test_ingress_admission.py`` (which feeds them to a real Envoy): the
services of a zone (local instances and other zones'), each scenario's inputs, and
``as_data``, the generated resources as plain data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from google.protobuf.json_format import MessageToDict

from proxy.context import Endpoint, RemoteZone, Service
from proxy.envoy.resources import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ProxyResources
from zone_ingress.envoy import IngressContext

SVC, PROTO = "gossamer.io/service", "gossamer.io/protocol"


KEY = "an-hmac-key-only-to-shape-a-test-token"


def endpoint(address: str, port: int, service: str, **tags: str) -> Endpoint:
    return Endpoint(address, port, {SVC: service, **tags})


EAST = RemoteZone("east", "192.168.1.1", 10001, instances=3)


SERVICES = {
    "default": {
        "backend": Service("backend", "http", (
            endpoint("10.0.0.1", 18080, "backend", version="v1"),
            endpoint("10.0.0.2", 18080, "backend", version="v2"),
            endpoint("backend-3.internal", 18080, "backend")),  # a hostname: not routable
            remote=(EAST,)),
        "grpc-api": Service("grpc-api", "grpc", (endpoint("10.0.0.3", 19090, "grpc-api"),)),
        "remote-only": Service("remote-only", "http", remote=(EAST,)),
        "named-only": Service("named-only", "tcp", (endpoint("db.internal", 5432,
                                                             "named-only"),)),
    },
    "payments": {"ledger": Service("ledger", "tcp", (endpoint("10.1.0.1", 15432, "ledger"),))},
}


@dataclass(frozen=True)
class Scenario:
    name: str
    ctx: IngressContext


SCENARIOS = [
    Scenario("two-meshes", IngressContext("east-ingress", "east", "0.0.0.0", 10001, SERVICES)),
    Scenario("specific-address",
             IngressContext("east-ingress", "east", "10.0.0.9", 10443,
                            {"default": {"backend": SERVICES["default"]["backend"]}})),
    Scenario("no-service", IngressContext("east-ingress", "east", "0.0.0.0", 10001, {})),
]


SCENARIO_NAMES = [s.name for s in SCENARIOS]


def as_data(resources: ProxyResources) -> dict[str, Any]:
    short = {LISTENER_TYPE: "listeners", CLUSTER_TYPE: "clusters", ENDPOINT_TYPE: "endpoints"}
    out: dict[str, Any] = {v: {} for v in short.values()}
    out["routes"] = {}
    for type_url, name, message in resources.items():
        out[short[type_url]][name] = json.loads(json.dumps(
            MessageToDict(message, preserving_proto_field_name=True)))
    return out

