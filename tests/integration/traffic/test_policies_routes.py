"""Route, rate-limit and fault policies change real traffic: MeshHTTPRoute (matches, splits,
header rewrites), MeshTCPRoute (weighted connections), MeshRateLimit and
MeshFaultInjection, through real Envoy sidecars.

One zone per module (the ``lab`` fixture, ``conftest.py`` here): ``web-1`` (service ``web``,
tag ``team: frontend``) calls ``backend`` (``backend-1`` v1 and ``backend-2`` v2, HTTP) and
``echo`` (``echo-1`` v1 and ``echo-2`` v2, TCP) through explicit outbounds. Each test applies
its policies, waits until every Envoy uses the config that follows
(``DataplaneEnv.converged``), drives traffic, asserts on what the client and the backends
saw, and deletes its policies (waiting again), so the tests do not depend on each other.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.dataplane_apps import echo, instances, requests, statuses
from tests.integration.traffic.policies import ENVOY_TIMER_SLACK, Lab, policy, to_backend

pytestmark = pytest.mark.asyncio(loop_scope="module")


def share(replies: list[Any], instance: str) -> float:
    return sum(r.instance == instance for r in replies) / len(replies)


def subset(version: str, weight: int = 1) -> dict[str, Any]:
    return {"kind": "MeshServiceSubset", "name": "backend", "tags": {"version": version},
            "weight": weight}


async def test_http_route_matches_splits_and_rewrites_headers(lab: Lab) -> None:
    rules = [
        {"matches": [{"path": {"type": "PathPrefix", "value": "/only-v1"}}],
         "default": {"backendRefs": [subset("v1")]}},
        {"matches": [{"headers": [{"type": "Exact", "name": "x-version", "value": "v2"}]}],
         "default": {"backendRefs": [subset("v2")], "filters": [
             {"type": "RequestHeaderModifier", "requestHeaderModifier": {
                 "set": [{"name": "x-routed", "value": "by-header"}]}}]}},
        {"matches": [{"path": {"type": "PathPrefix", "value": "/split"}}],
         "default": {"backendRefs": [subset("v1", 80), subset("v2", 20)]}}]
    async with lab.env.policy(policy("MeshHTTPRoute", "backend-routes", {
            "targetRef": {"kind": "MeshService", "name": "web"},
            "to": [{"targetRef": {"kind": "MeshService", "name": "backend"}, "rules": rules}]})):
        assert instances(await requests(lab.backend, "/only-v1/a", 10)) == {"backend-1": 10}
        by_header = await requests(lab.backend, "/", 10, headers={"x-version": "v2"})
        assert instances(by_header) == {"backend-2": 10}
        assert all(r.body["headers"].get("x-routed") == "by-header" for r in by_header)
        assert set(instances(await requests(lab.backend, "/", 10))) == {
            "backend-1", "backend-2"}  # the catch-all still balances over both
        split = await requests(lab.backend, "/split", 300)
        assert statuses(split) == {200: 300}
        assert 0.70 <= share(split, "backend-1") <= 0.90, instances(split)


async def test_tcp_route_splits_connections_by_weight(lab: Lab) -> None:
    async def instances_of(count: int) -> list[str]:
        return [(await echo(lab.echo, b"hi")).split(b":")[0].decode() for _ in range(count)]

    assert set(await instances_of(10)) == {"echo-1", "echo-2"}
    route = policy("MeshTCPRoute", "echo-split", {
        "targetRef": {"kind": "MeshService", "name": "web"},
        "to": [{"targetRef": {"kind": "MeshService", "name": "echo"}, "rules": [{"default": {
            "backendRefs": [
                {"kind": "MeshServiceSubset", "name": "echo", "tags": {"version": "v1"},
                 "weight": 80},
                {"kind": "MeshServiceSubset", "name": "echo", "tags": {"version": "v2"},
                 "weight": 20}]}}]}]})
    async with lab.env.policy(route):
        seen = await instances_of(300)
        assert set(seen) == {"echo-1", "echo-2"}
        assert 0.70 <= seen.count("echo-1") / len(seen) <= 0.90, seen.count("echo-1")


async def test_local_rate_limit_answers_429_after_the_budget(lab: Lab) -> None:
    async with lab.env.policy(policy("MeshRateLimit", "five-a-minute", {
            "targetRef": {"kind": "MeshService", "name": "backend"},
            "from": [{"targetRef": {"kind": "Mesh"}, "default": {"local": {"http": {
                "requestRate": {"num": 5, "interval": "1m"},
                "onRateLimit": {"status": 429, "headers": {
                    "add": [{"name": "x-rate-limited", "value": "yes"}]}}}}}}]})):
        replies = await requests(lab.backend, count=30)
        # Each backend sidecar has its own bucket of 5.
        assert statuses(replies) == {200: 10, 429: 20}, statuses(replies)
        assert all(r.headers.get("x-rate-limited") == "yes"
                   for r in replies if r.status == 429)
        assert statuses(replies[-5:]) == {429: 5}
    assert statuses(await requests(lab.backend, count=10)) == {200: 10}


async def test_fault_injection_aborts_a_share_and_delays(lab: Lab) -> None:
    async with lab.env.policy(to_backend("MeshFaultInjection", "chaos", {
            "http": [{"abort": {"httpStatus": 503, "percentage": 30}}]})):
        replies = await requests(lab.backend, count=300)
        aborted = statuses(replies)[503]
        assert statuses(replies)[200] + aborted == 300
        assert 60 <= aborted <= 120, aborted  # 20%..40%
        served = sum(app.hits["/"] for app in lab.apps.values())
        assert served == 300 - aborted  # aborted requests never reached a backend

    async with lab.env.policy(to_backend("MeshFaultInjection", "slowdown", {
            "http": [{"delay": {"value": "500ms", "percentage": 100}}]})):
        for reply in await requests(lab.backend, count=3):
            assert reply.status == 200 and reply.elapsed >= 0.5 - ENVOY_TIMER_SLACK, reply
    fast = await requests(lab.backend, count=3)
    assert all(r.status == 200 and r.elapsed < 0.5 for r in fast)

