"""The zone's view of a mesh: local endpoints, other zones' ingresses, proxy contexts."""

from __future__ import annotations

from typing import Any

from gossamer.model.registry import parse_document
from gossamer.store.memory import MemoryStore
from proxy.context import Endpoint, OutboundListener, RemoteZone
from zone_cp.mesh_state import MeshState


def dp(name: str, address: str, service: str, port: int = 18080, zone: str | None = None,
       protocol: str = "http", outbound: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "type": "Dataplane", "name": name, "mesh": "default",
        "networking": {"address": address, "inbound": [
            {"port": port, "servicePort": 8080,
             "tags": {"gossamer.io/service": service, "gossamer.io/protocol": protocol}}],
            "outbound": outbound or []}}
    if zone:
        doc["labels"] = {"gossamer.io/zone": zone, "gossamer.io/origin": "zone"}
    return doc


def ingress(zone: str, address: str, services: dict[str, int],
            mesh: str = "default") -> dict[str, Any]:
    return {"type": "ZoneIngress", "name": f"{zone}-ingress",
            "labels": {"gossamer.io/zone": zone, "gossamer.io/origin": "zone"},
            "networking": {"address": address, "port": 10001, "advertisedAddress": address,
                           "advertisedPort": 10001},
            "availableServices": [{"mesh": mesh, "instances": n,
                                   "tags": {"gossamer.io/service": s,
                                            "gossamer.io/protocol": "http"}}
                                  for s, n in services.items()]}


def state_of(*docs: dict[str, Any]) -> MeshState:
    state = MeshState(MemoryStore(), "west")
    state._reset([parse_document(d) for d in
                  [{"type": "Mesh", "name": "default", "mtls": {"mode": "permissive"}}, *docs]])
    return state


def test_services_local_first_then_remote_zones() -> None:
    state = state_of(
        dp("backend-1", "10.0.0.2", "backend"), dp("backend-2", "10.0.0.1", "backend"),
        dp("web-1", "10.0.0.3", "web", protocol="tcp"),
        ingress("east", "192.168.1.1", {"backend": 3, "db": 1}),
        ingress("north", "192.168.2.1", {"backend": 2}),
        ingress("west", "192.168.0.1", {"backend": 9}),  # our own ingress: never a target
        {"type": "Zone", "name": "north", "enabled": False},
    )
    services = state.services("default")
    assert sorted(services) == ["backend", "db", "web"]
    backend = services["backend"]
    assert backend.protocol == "http"
    assert backend.endpoints == (
        Endpoint("10.0.0.1", 18080, {"gossamer.io/service": "backend",
                                     "gossamer.io/protocol": "http"}, service_port=8080),
        Endpoint("10.0.0.2", 18080, {"gossamer.io/service": "backend",
                                     "gossamer.io/protocol": "http"}, service_port=8080))
    assert backend.remote == (RemoteZone("east", "192.168.1.1", 10001, 3),)
    assert services["db"].endpoints == () and services["db"].remote[0].zone == "east"
    assert services["web"].protocol == "tcp"


def test_other_zones_dataplanes_are_not_local_endpoints() -> None:
    state = state_of(dp("backend-1", "10.0.0.2", "backend", zone="east"),
                     dp("backend-2", "10.0.0.5", "backend", zone="west"))
    assert [e.address for e in state.services("default")["backend"].endpoints] == ["10.0.0.5"]


def test_context_for_a_proxy() -> None:
    web = dp("web-1", "10.0.0.3", "web",
             outbound=[{"port": 20001, "tags": {"gossamer.io/service": "backend"}},
                       {"port": 20002, "tags": {"gossamer.io/service": "nowhere"}}])
    timeout = {"type": "MeshTimeout", "name": "t", "mesh": "default",
               "spec": {"to": [{"targetRef": {"kind": "MeshService", "name": "backend"},
                                "default": {"connectionTimeout": "2s"}}]}}
    state = state_of(dp("backend-1", "10.0.0.2", "backend"), web, timeout)
    web_res = state.get("Dataplane", "web-1", "default")
    assert web_res is not None
    ctx = state.context_for(web_res)
    assert ctx.mtls_mode == "permissive" and ctx.zone == "west" and ctx.mesh == "default"
    assert ctx.outbounds == (OutboundListener("backend", 20001), OutboundListener("nowhere", 20002))
    assert ctx.services["nowhere"].endpoints == ()
    merged = ctx.policies.kind("MeshTimeout").outbound("backend")
    assert merged is not None and "2s" in str(merged.conf)


def test_listeners_are_told_of_every_change() -> None:
    state = state_of()
    seen: list[str] = []
    unlisten = state.listen(lambda res: seen.append(res.name if res else "*"))
    state._changed(parse_document(dp("a", "10.0.0.1", "a")), deleted=False)
    state._changed(parse_document(dp("a", "10.0.0.1", "a")), deleted=True)
    unlisten()
    state._changed(parse_document(dp("b", "10.0.0.1", "b")), deleted=False)
    assert seen == ["a", "a"]
    assert state.get("Dataplane", "a", "default") is None


def test_context_follows_a_new_route_to_its_backend() -> None:
    web = dp("web-1", "10.0.0.3", "web",
             outbound=[{"port": 20001, "tags": {"gossamer.io/service": "backend"}}])
    breaker = {"type": "MeshCircuitBreaker", "name": "cb", "mesh": "default",
               "spec": {"targetRef": {"kind": "Mesh"},
                        "to": [{"targetRef": {"kind": "MeshService", "name": "canary"},
                                "default": {"connectionLimits": {"maxConnections": 5}}}]}}
    route = {"type": "MeshHTTPRoute", "name": "r", "mesh": "default",
             "spec": {"targetRef": {"kind": "Mesh"},
                      "to": [{"targetRef": {"kind": "MeshService", "name": "backend"},
                              "rules": [{"matches": [{"path": {"type": "PathPrefix",
                                                               "value": "/"}}],
                                         "default": {"backendRefs": [
                                             {"kind": "MeshService", "name": "canary"}]}}]}]}}
    state = state_of(web, breaker)
    web_res = state.get("Dataplane", "web-1", "default")
    assert web_res is not None
    # Outbound confs are matched only for what the proxy can reach: not canary yet...
    assert "canary" not in (state.context_for(web_res).policies.kind("MeshCircuitBreaker")
                            .outbounds)
    # ...and once a route on its outbound sends there, the change brings canary's confs.
    state._changed(parse_document(route), deleted=False)
    merged = state.context_for(web_res).policies.kind("MeshCircuitBreaker").outbound("canary")
    assert merged is not None and merged.policies[0].name == "cb"
