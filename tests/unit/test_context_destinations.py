"""``MeshState.context_for`` matches outbound confs only for the services a proxy can
reach (its outbounds and their routes' backends), and that changes no Envoy resource.

The reference is what ``context_for`` did before: every service of the mesh matched as a
destination. The mesh is built on a memory store and followed by a ``MeshState`` as in
``tests/bench/bench_config_gen.py``, with routes whose backends are nobody's outbound
and carry policies of their own (circuit breakers, health checks, load balancing), so
leaving those backends out of the matched destinations changes their clusters.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from authority.bootstrap import ALLOW_ALL, DEFAULT_MESH
from gossamer.model.base import Resource
from gossamer.model.registry import parse_document
from gossamer.policy import RouteBackends, match_policies
from gossamer.resources import ResourceManager
from gossamer.store.memory import MemoryStore
from proxy.context import OutboundListener, ProxyContext
from proxy.envoy import ProxyResources, generate
from tests.builders import dataplane_doc
from tests.waiting import eventually
from zone_cp.mesh_state import MeshState

SVC = "gossamer.io/service"
PROTO = "gossamer.io/protocol"
ZONE = "lab"
N = 15
# Nobody's outbound: reached only through routes. "deep" only through bk-1's own route.
BACKENDS = {"bk-0": "http", "bk-1": "tcp", "bk-2": "http", "bk-3": "http", "deep": "http"}
VIP = OutboundListener("bk-1", 80, "240.0.0.1")


def svc(i: int) -> str:
    return f"svc-{i % N:02d}"


def dataplane(name: str, service: str, protocol: str, k: int, instance: int,
              outbounds: list[str]) -> dict[str, Any]:
    return dataplane_doc(f"{name}-{instance}", service, address=f"10.0.{k}.{instance + 1}",
                         tags={PROTO: protocol, "version": f"v{instance % 2 + 1}"},
                         outbounds=[{"port": 20000 + j, "tags": {SVC: s}}
                                    for j, s in enumerate(outbounds)])


def dataplanes() -> Iterator[dict[str, Any]]:
    for i in range(N):
        for instance in range(2):
            yield dataplane(svc(i), svc(i), "tcp" if i % 5 == 4 else "http", i, instance,
                            [svc(i + 1), svc(i + 2), svc(i + 3)])
    for k, (name, protocol) in enumerate(BACKENDS.items()):
        for instance in range(2):
            yield dataplane(name, name, protocol, 100 + k, instance, [])


def policy(kind: str, name: str, spec: dict[str, Any], **labels: str) -> dict[str, Any]:
    doc = {"type": kind, "mesh": "default", "name": name, "spec": spec}
    if labels:
        doc["labels"] = {f"gossamer.io/{k}": v for k, v in labels.items()}
    return doc


def to(target: str | None, default: dict[str, Any]) -> dict[str, Any]:
    ref = {"kind": "Mesh"} if target is None else {"kind": "MeshService", "name": target}
    return {"targetRef": ref, "default": default}


MESH = {"kind": "Mesh"}
BREAKER = {"connectionLimits": {"maxConnections": 7, "maxPendingRequests": 3}}
CHECK = {"interval": "10s", "timeout": "2s", "unhealthyThreshold": 3, "healthyThreshold": 1,
         "http": {"path": "/health"}}
RING_HASH = {"loadBalancer": {"type": "RingHash", "ringHash": {"minRingSize": 1024}}}


def routes() -> Iterator[dict[str, Any]]:
    def split(*refs: tuple[str, dict[str, str] | None, int]) -> list[dict[str, Any]]:
        return [{"kind": "MeshServiceSubset", "name": n, "tags": t, "weight": w} if t
                else {"kind": "MeshService", "name": n, "weight": w} for n, t, w in refs]

    yield policy("MeshHTTPRoute", "svc-00-split", {"targetRef": MESH, "to": [{
        "targetRef": {"kind": "MeshService", "name": svc(0)},
        "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/api"}}],
                   "default": {"backendRefs": split(("bk-0", None, 80),
                                                    ("bk-2", {"version": "v2"}, 20)),
                               "filters": [{"type": "RequestMirror", "requestMirror": {
                                   "backendRef": {"kind": "MeshService", "name": "bk-3"},
                                   "percentage": 10}}]}}]}]})
    # Only proxies of v1 instances get this one: a route that selects some proxies.
    yield policy("MeshHTTPRoute", "svc-06-v1", {
        "targetRef": {"kind": "MeshSubset", "tags": {"version": "v1"}}, "to": [{
            "targetRef": {"kind": "MeshService", "name": svc(6)},
            "rules": [{"matches": [{"path": {"type": "Exact", "value": "/x"}}],
                       "default": {"backendRefs": split(("bk-2", None, 1))}}]}]})
    yield policy("MeshTCPRoute", "svc-04-split", {"targetRef": MESH, "to": [{
        "targetRef": {"kind": "MeshService", "name": svc(4)},
        "rules": [{"default": {"backendRefs": split(("bk-1", None, 3), ("bk-0", None, 1))}}]}]})
    # A TCP route on an HTTP service: its backends become the catch-all route's.
    yield policy("MeshTCPRoute", "svc-07-tcp", {"targetRef": MESH, "to": [{
        "targetRef": {"kind": "MeshService", "name": svc(7)},
        "rules": [{"default": {"backendRefs": split(("bk-3", None, 1))}}]}]})
    # A backend's own route: used only by proxies with bk-1 as an outbound (the VIP ones).
    yield policy("MeshTCPRoute", "bk-1-deep", {"targetRef": MESH, "to": [{
        "targetRef": {"kind": "MeshService", "name": "bk-1"},
        "rules": [{"default": {"backendRefs": split(("deep", None, 1))}}]}]})


def policies() -> Iterator[dict[str, Any]]:
    yield policy("MeshTimeout", "timeouts", {
        "targetRef": MESH, "to": [to(None, {"connectionTimeout": "2s"})],
        "from": [{"targetRef": MESH, "default": {"idleTimeout": "10m"}}]})
    yield policy("MeshRetry", "retries", {"targetRef": MESH, "to": [to(None, {
        "http": {"numRetries": 2, "retryOn": ["5xx"]}, "tcp": {"maxConnectAttempt": 3}})]})
    for i in range(0, N, 3):
        yield policy("MeshTrafficPermission", f"mtp-{i}", {
            "targetRef": {"kind": "MeshService", "name": svc(i)},
            "from": [{"targetRef": {"kind": "MeshService", "name": svc(i - 1)},
                      "default": {"action": "Allow"}},
                     {"targetRef": MESH, "default": {"action": "Deny"}}]})
        yield policy("MeshCircuitBreaker", f"mcb-{i}", {
            "targetRef": MESH, "to": [to(svc(i), BREAKER)]})
    for name in BACKENDS:
        yield policy("MeshCircuitBreaker", f"mcb-{name}", {
            "targetRef": MESH, "to": [to(name, BREAKER)]})
    yield policy("MeshHealthCheck", "checks", {
        "targetRef": MESH, "to": [to("bk-0", CHECK), to("deep", CHECK), to(svc(1), CHECK)]})
    yield policy("MeshLoadBalancingStrategy", "lb", {
        "targetRef": MESH, "to": [to("bk-1", RING_HASH), to(svc(2), RING_HASH)]})
    # By tags and by Dataplane: only some proxies see these.
    yield policy("MeshTimeout", "v2-to-bk-2", {
        "targetRef": {"kind": "MeshSubset", "tags": {"version": "v2"}},
        "to": [to("bk-2", {"connectionTimeout": "9s", "http": {"requestTimeout": "3s"}})]})
    yield policy("MeshCircuitBreaker", "svc-03-v1-to-bk-0", {
        "targetRef": {"kind": "MeshServiceSubset", "name": svc(3), "tags": {"version": "v1"}},
        "to": [to("bk-0", {"connectionLimits": {"maxConnections": 1}})]})
    yield policy("MeshRetry", "one-proxy", {
        "targetRef": {"kind": "Dataplane", "name": f"{svc(14)}-0"},
        "to": [to("bk-0", {"http": {"numRetries": 5}})]})
    yield policy("MeshFaultInjection", "chaos", {
        "targetRef": MESH,
        "to": [to(svc(3), {"http": [{"abort": {"httpStatus": 503, "percentage": 30}}]})],
        "from": [{"targetRef": MESH,
                  "default": {"http": [{"abort": {"httpStatus": 500, "percentage": 1}}]}}]})
    yield policy("MeshRateLimit", "limits", {
        "targetRef": {"kind": "MeshService", "name": svc(5)},
        "from": [{"targetRef": MESH, "default": {"local": {"http": {
            "requestRate": {"num": 100, "interval": "1s"}}}}}]})
    # Origins: global applies; another zone's zone-origin policy does not, ours does.
    yield policy("MeshCircuitBreaker", "global-bk-2", {
        "targetRef": MESH, "to": [to("bk-2", {"connectionLimits": {"maxRequests": 40}})]},
        origin="global")
    yield policy("MeshTimeout", "east-only", {
        "targetRef": MESH, "to": [to("bk-0", {"connectionTimeout": "1s"})]},
        origin="zone", zone="east")
    yield policy("MeshTimeout", "lab-only", {
        "targetRef": MESH, "to": [to("bk-3", {"connectionTimeout": "4s"})]},
        origin="zone", zone=ZONE)
    yield from routes()


async def mesh_state() -> MeshState:
    manager = ResourceManager(MemoryStore())
    for doc in [DEFAULT_MESH, ALLOW_ALL, *policies(), *dataplanes()]:
        await manager.apply(parse_document(doc, manager.registry))
    state = MeshState(manager.store, zone=ZONE)
    task = asyncio.create_task(state.run())
    await eventually(lambda: state.generation > 0, what="the state to load the store")
    task.cancel()
    return state


def with_every_destination(state: MeshState, dp: Resource, ctx: ProxyContext) -> ProxyContext:
    """``ctx`` with its policies matched as ``context_for`` did before: every service of
    the mesh as a destination."""
    return dataclasses.replace(ctx, policies=match_policies(
        dp, state.policies(dp.mesh), destinations=list(state.services(dp.mesh)),
        zone=state.zone))


def serialized(resources: ProxyResources) -> dict[str, dict[str, bytes]]:
    return {type_url: {name: m.SerializeToString(deterministic=True) for name, m in ms.items()}
            for type_url, ms in resources.by_type().items()}


def extra_outbounds(dp: Resource) -> tuple[OutboundListener, ...]:
    # Some proxies also get a VIP listener, as the zone CP's mesh DNS gives them.
    return (VIP,) if dp.name.endswith("-1") else ()


async def test_restricted_destinations_generate_the_same_resources() -> None:
    state = await mesh_state()
    dps = state.of_kind("Dataplane", "default")
    assert len(dps) == 2 * (N + len(BACKENDS))
    for dp in dps:
        ctx = state.context_for(dp, extra_outbounds(dp))
        reference = with_every_destination(state, dp, ctx)
        assert serialized(generate(ctx)) == serialized(generate(reference)), dp.name


async def test_route_backends_get_their_own_confs() -> None:
    """The mesh above exercises what the restriction could break: a proxy's clusters for
    services it reaches only through a route carry those services' own policies."""
    state = await mesh_state()
    dp = state.get("Dataplane", f"{svc(14)}-0", "default")  # svc-00 is its outbound
    assert dp is not None
    clusters = generate(state.context_for(dp)).clusters
    assert set(clusters) >= {"bk-0", "bk-3"}  # route backend, mirror backend
    assert clusters["bk-0"].circuit_breakers.thresholds[0].max_connections.value == 7
    assert clusters["bk-0"].health_checks[0].http_health_check.path == "/health"
    vip = state.get("Dataplane", f"{svc(3)}-1", "default")
    assert vip is not None
    clusters = generate(state.context_for(vip, (VIP,))).clusters
    assert "deep" in clusters  # through the VIP's route: bk-1 is an outbound there
    assert clusters["deep"].health_checks[0].http_health_check.path == "/health"


async def test_a_destination_outside_the_match_is_refused() -> None:
    state = await mesh_state()
    dp = state.get("Dataplane", f"{svc(14)}-0", "default")  # svc-00 is its outbound
    assert dp is not None
    ctx = state.context_for(dp)
    assert ctx.policies.kind("MeshCircuitBreaker").outbound("bk-0") is not None
    with pytest.raises(KeyError):
        ctx.policies.kind("MeshCircuitBreaker").outbound("bk-1")
    with pytest.raises(KeyError):  # also for a kind nothing applies to here
        ctx.policies.kind("MeshAccessLog").outbound("bk-1")


def test_reachable_is_outbounds_and_their_route_backends() -> None:
    index = RouteBackends.of([parse_document(p) for p in routes()], "default")
    assert index.reachable([svc(0)]) == {svc(0), "bk-0", "bk-2", "bk-3"}
    assert index.reachable([svc(4), svc(5)]) == {svc(4), svc(5), "bk-0", "bk-1"}
    assert index.reachable(["bk-1"]) == {"bk-1", "deep"}  # one level: not deep's routes
    assert RouteBackends.of([parse_document(p) for p in routes()], "other").reachable(
        [svc(0)]) == {svc(0)}
