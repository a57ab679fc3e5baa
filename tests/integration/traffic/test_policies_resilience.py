"""Traffic permissions and resilience policies change real traffic: MeshTrafficPermission,
MeshRetry, MeshTimeout, MeshCircuitBreaker (outlier detection, connection limits),
MeshHealthCheck and MeshLoadBalancingStrategy, through real Envoy sidecars.

One zone per module (the ``lab`` fixture, ``conftest.py`` here): ``web-1`` (service ``web``,
tag ``team: frontend``) calls ``backend`` (``backend-1`` v1 and ``backend-2`` v2, HTTP) and
``echo`` (``echo-1`` v1 and ``echo-2`` v2, TCP) through explicit outbounds. Each test applies
its policies, waits until every Envoy uses the config that follows
(``DataplaneEnv.converged``), drives traffic, asserts on what the client and the backends
saw, and deletes its policies (waiting again), so the tests do not depend on each other.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.dataplane_apps import instances, request, requests, statuses
from tests.integration.traffic.policies import ENVOY_TIMER_SLACK, Lab, policy, to_backend
from tests.waiting import eventually

pytestmark = pytest.mark.asyncio(loop_scope="module")


def permission(name: str, source: dict[str, Any], action: str) -> dict[str, Any]:
    return policy("MeshTrafficPermission", name, {
        "targetRef": {"kind": "MeshService", "name": "backend"},
        "from": [{"targetRef": source, "default": {"action": action}}]})


WEB = {"kind": "MeshService", "name": "web"}


async def test_traffic_permission_denies_and_allows_by_service_and_by_tags(lab: Lab) -> None:
    assert statuses(await requests(lab.backend, count=4)) == {200: 4}

    await lab.env.apply(permission("web-to-backend", WEB, "Deny"))
    assert statuses(await requests(lab.backend, count=4)) == {403: 4}
    # The same policy changed to Allow: the change reaches the sidecar like a new one.
    [allowed] = await lab.env.apply(permission("web-to-backend", WEB, "Allow"))
    assert statuses(await requests(lab.backend, count=4)) == {200: 4}
    await lab.env.delete(allowed)

    # By the caller's tags, which its certificate carries as gossamer://team/frontend.
    async with lab.env.policy(permission(
            "frontend-denied", {"kind": "MeshSubset", "tags": {"team": "frontend"}}, "Deny")):
        assert statuses(await requests(lab.backend, count=4)) == {403: 4}
    async with lab.env.policy(permission(
            "ops-denied", {"kind": "MeshSubset", "tags": {"team": "ops"}}, "Deny")):
        assert statuses(await requests(lab.backend, count=4)) == {200: 4}
    assert statuses(await requests(lab.backend, count=4)) == {200: 4}


async def test_retry_hides_a_backend_failing_every_other_request(lab: Lab) -> None:
    without = statuses(await requests(lab.backend, "/flaky", 20))
    assert 8 <= without[503] <= 12 and without[200] + without[503] == 20, without

    async with lab.env.policy(to_backend("MeshRetry", "retry-5xx", {
            "http": {"numRetries": 2, "retryOn": ["5xx"]}})):
        sent = sum(app.hits["/flaky"] for app in lab.apps.values())
        assert statuses(await requests(lab.backend, "/flaky", 40)) == {200: 40}
        served = sum(app.hits["/flaky"] for app in lab.apps.values()) - sent
    assert served > 40  # the failures were there; the sidecar retried them


async def test_timeout_turns_a_slow_backend_into_504(lab: Lab) -> None:
    [slow] = await requests(lab.backend, "/slow/2000", timeout=10)
    assert slow.status == 200 and slow.elapsed >= 2.0

    async with lab.env.policy(to_backend("MeshTimeout", "request-timeout", {
            "http": {"requestTimeout": "500ms"}})):
        for reply in await requests(lab.backend, "/slow/2000", 3, timeout=10):
            assert reply.status == 504, reply
            assert 0.5 - ENVOY_TIMER_SLACK <= reply.elapsed < 1.5, reply.elapsed
        assert statuses(await requests(lab.backend, "/", 3)) == {200: 3}


async def test_outlier_detection_ejects_the_failing_instance(lab: Lab) -> None:
    before = await requests(lab.backend, "/fail-on/backend-2", 20)
    assert 8 <= statuses(before)[503] <= 12

    async with lab.env.policy(to_backend("MeshCircuitBreaker", "eject", {
            "outlierDetection": {"interval": "1s", "baseEjectionTime": "1m",
                                 "maxEjectionPercent": 50,
                                 "detectors": {"totalFailures": {"consecutive": 2}}}})):
        replies = await requests(lab.backend, "/fail-on/backend-2", 40)
        # backend-2 fails twice in a row, is ejected, and backend-1 takes everything.
        assert statuses(replies)[503] <= 3, statuses(replies)
        assert {r.instance for r in replies[-30:]} == {"backend-1"}
        assert await lab.web.stat("cluster.backend.outlier_detection.ejections_active") == 1


async def test_connection_limits_shed_the_overflow_with_503(lab: Lab) -> None:
    async def burst() -> list[Any]:
        async with httpx.AsyncClient(timeout=10, limits=httpx.Limits(
                max_connections=20)) as client:
            return list(await asyncio.gather(*(request(client, lab.backend, "/slow/500")
                                               for _ in range(12))))

    assert statuses(await burst()) == {200: 12}
    async with lab.env.policy(to_backend("MeshCircuitBreaker", "limits", {
            "connectionLimits": {"maxConnections": 1, "maxPendingRequests": 1,
                                 "maxRequests": 1}})):
        replies = await burst()
        counts = statuses(replies)
        assert counts[200] >= 1 and counts[503] >= 6, counts
        assert all(r.headers.get("x-envoy-overloaded") == "true"
                   for r in replies if r.status == 503)
        assert await lab.web.stat("cluster.backend.upstream_rq_pending_overflow") >= 6


async def test_active_health_check_keeps_traffic_off_an_unhealthy_instance(lab: Lab) -> None:
    lab.apps["backend-2"].health_status = 500
    async with lab.env.policy(to_backend("MeshHealthCheck", "health", {
            "interval": "1s", "noTrafficInterval": "1s", "timeout": "1s",
            "unhealthyThreshold": 1, "healthyThreshold": 1,
            "http": {"path": "/health", "expectedStatuses": [200]}})):

        async def only_backend_1() -> bool:
            return instances(await requests(lab.backend, count=10)) == {"backend-1": 10}

        await eventually(only_backend_1, timeout=15, what="backend-2 marked unhealthy")
        assert instances(await requests(lab.backend, count=20)) == {"backend-1": 20}
        assert lab.apps["backend-2"].hits["/health"] >= 1  # the checks reached the app

        lab.apps["backend-2"].health_status = 200

        async def both() -> bool:
            return set(instances(await requests(lab.backend, count=10))) == {
                "backend-1", "backend-2"}

        await eventually(both, timeout=15, what="backend-2 healthy again")


async def test_ring_hash_by_header_sticks_and_round_robin_spreads(lab: Lab) -> None:
    async with lab.env.policy(to_backend("MeshLoadBalancingStrategy", "lb", {
            "loadBalancer": {"type": "RoundRobin"}})):
        spread = instances(await requests(lab.backend, count=20))
        assert spread["backend-1"] >= 8 and spread["backend-2"] >= 8, spread

    async with lab.env.policy(to_backend("MeshLoadBalancingStrategy", "lb", {
            "loadBalancer": {"type": "RingHash", "ringHash": {
                "hashPolicies": [{"type": "Header", "header": {"name": "x-user"}}]}}})):
        chosen = {}
        for user in range(16):
            seen = instances(await requests(lab.backend, count=5,
                                            headers={"x-user": f"user-{user}"}))
            assert len(seen) == 1 and sum(seen.values()) == 5, (user, seen)
            chosen[user] = next(iter(seen))
        assert set(chosen.values()) == {"backend-1", "backend-2"}, chosen

