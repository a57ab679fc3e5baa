"""Every policy changes real traffic: a zone CP in-process, real Envoy sidecars, real HTTP
and TCP backends (``tests.dataplane_env``).

One zone per module: ``web-1`` (service ``web``, tag ``team: frontend``) calls
``backend`` (``backend-1`` v1 and ``backend-2`` v2, HTTP) and ``echo`` (``echo-1`` v1 and
``echo-2`` v2, TCP) through explicit outbounds. Each test applies its policies, waits
until every Envoy uses the config that follows (``DataplaneEnv.converged``: what Envoy
reports equals what the zone CP would send now), drives traffic, asserts on what the
client and the backends saw, and deletes its policies (waiting again), so the tests do
not depend on each other. The certificate rotation test runs its own mesh.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.dataplane_apps import (
    EchoApp,
    HttpApp,
    OtlpReceiver,
    echo,
    instances,
    listen_port,
    request,
    requests,
    statuses,
)
from tests.dataplane_env import DataplaneEnv, Member, Sidecar
from tests.waiting import eventually

pytestmark = pytest.mark.asyncio(loop_scope="module")

SPAN_KIND_SERVER = 2
SPAN_KIND_CLIENT = 3


@dataclass
class Lab:
    env: DataplaneEnv
    web: Sidecar
    apps: dict[str, HttpApp]
    backend: int  # web's outbound port for the backend service
    echo: int  # web's outbound port for the echo service
    directory: Path


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def lab(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Lab]:
    directory = tmp_path_factory.mktemp("policies")
    apps = {name: HttpApp(name).start() for name in ("backend-1", "backend-2", "web-1")}
    echoes = [EchoApp(name).start() for name in ("echo-1", "echo-2")]
    backend, echo_port = listen_port(), listen_port()
    try:
        async with DataplaneEnv(directory) as env:
            web, *_ = await env.start(
                Member("web-1", "web", apps["web-1"].port, tags={"team": "frontend"},
                       outbounds={"backend": backend, "echo": echo_port}),
                Member("backend-1", "backend", apps["backend-1"].port, tags={"version": "v1"}),
                Member("backend-2", "backend", apps["backend-2"].port, tags={"version": "v2"}),
                Member("echo-1", "echo", echoes[0].port, "tcp", tags={"version": "v1"}),
                Member("echo-2", "echo", echoes[1].port, "tcp", tags={"version": "v2"}))
            yield Lab(env, web, apps, backend, echo_port, directory)
    finally:
        for app in [*apps.values(), *echoes]:
            app.stop()


@pytest.fixture(autouse=True)
def fresh_apps(lab: Lab) -> None:
    for app in lab.apps.values():
        app.reset()


def policy(kind: str, name: str, spec: dict[str, Any], mesh: str = "default") -> dict[str, Any]:
    return {"type": kind, "name": name, "mesh": mesh, "spec": spec}


def to_backend(kind: str, name: str, default: dict[str, Any]) -> dict[str, Any]:
    """A policy for web's traffic to the backend service."""
    return policy(kind, name, {
        "targetRef": {"kind": "MeshService", "name": "web"},
        "to": [{"targetRef": {"kind": "MeshService", "name": "backend"}, "default": default}]})


def share(replies: list[Any], instance: str) -> float:
    return sum(r.instance == instance for r in replies) / len(replies)


# -- MeshTrafficPermission -------------------------------------------------------------------

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


# -- MeshRetry -------------------------------------------------------------------------------

async def test_retry_hides_a_backend_failing_every_other_request(lab: Lab) -> None:
    without = statuses(await requests(lab.backend, "/flaky", 20))
    assert 8 <= without[503] <= 12 and without[200] + without[503] == 20, without

    async with lab.env.policy(to_backend("MeshRetry", "retry-5xx", {
            "http": {"numRetries": 2, "retryOn": ["5xx"]}})):
        sent = sum(app.hits["/flaky"] for app in lab.apps.values())
        assert statuses(await requests(lab.backend, "/flaky", 40)) == {200: 40}
        served = sum(app.hits["/flaky"] for app in lab.apps.values()) - sent
    assert served > 40  # the failures were there; the sidecar retried them


# Envoy arms its timers from the time cached at the start of its event-loop turn, so one
# can fire a few milliseconds before the client's own clock says the delay has passed
# (seen: 0.4967 s for a 500 ms timeout).
ENVOY_TIMER_SLACK = 0.02


# -- MeshTimeout -----------------------------------------------------------------------------

async def test_timeout_turns_a_slow_backend_into_504(lab: Lab) -> None:
    [slow] = await requests(lab.backend, "/slow/2000", timeout=10)
    assert slow.status == 200 and slow.elapsed >= 2.0

    async with lab.env.policy(to_backend("MeshTimeout", "request-timeout", {
            "http": {"requestTimeout": "500ms"}})):
        for reply in await requests(lab.backend, "/slow/2000", 3, timeout=10):
            assert reply.status == 504, reply
            assert 0.5 - ENVOY_TIMER_SLACK <= reply.elapsed < 1.5, reply.elapsed
        assert statuses(await requests(lab.backend, "/", 3)) == {200: 3}


# -- MeshCircuitBreaker ----------------------------------------------------------------------

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


# -- MeshHealthCheck -------------------------------------------------------------------------

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


# -- MeshLoadBalancingStrategy ---------------------------------------------------------------

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


# -- MeshHTTPRoute ---------------------------------------------------------------------------

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


# -- MeshTCPRoute ----------------------------------------------------------------------------

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


# -- MeshRateLimit ---------------------------------------------------------------------------

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


# -- MeshFaultInjection ----------------------------------------------------------------------

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


# -- MeshAccessLog ---------------------------------------------------------------------------

async def test_access_log_writes_json_lines_with_the_path(lab: Lab) -> None:
    log = lab.directory / "access.log"
    path = f"/logged/{uuid.uuid4().hex}"
    async with lab.env.policy(to_backend("MeshAccessLog", "log-to-file", {"backends": [{
            "file": {"path": str(log), "format": {"type": "Json", "json": [
                {"key": "path", "value": "%REQ(:PATH)%"},
                {"key": "status", "value": "%RESPONSE_CODE%"},
                {"key": "upstream", "value": "%UPSTREAM_CLUSTER%"}]}}}]})):
        assert statuses(await requests(lab.backend, path, 2)) == {200: 2}

        def logged() -> list[dict[str, Any]]:
            lines = log.read_text().splitlines() if log.exists() else []
            return [entry for entry in map(json.loads, lines) if entry["path"] == path]

        entries = await eventually(lambda: len(logged()) == 2 and logged(), timeout=30,
                                   what="two JSON lines in the access log")
        assert all(str(e["status"]) == "200" and e["upstream"] == "backend" for e in entries)


# -- MeshTrace -------------------------------------------------------------------------------

async def test_trace_reaches_an_otlp_receiver_with_client_and_server_spans(lab: Lab) -> None:
    receiver = await OtlpReceiver().start()
    try:
        async with lab.env.policy(policy("MeshTrace", "otel", {"default": {"backends": [
                {"type": "OpenTelemetry",
                 "openTelemetry": {"endpoint": f"127.0.0.1:{receiver.port}"}}]}})):
            [reply] = await requests(lab.backend, "/traced")
            assert reply.status == 200
            # Envoy propagates W3C trace context to the application.
            trace_id = reply.body["headers"]["traceparent"].split("-")[1]

            def spans() -> dict[tuple[str, int], Any]:
                return {(s.service, s.kind): s for s in receiver.spans
                        if s.trace_id == trace_id}

            found = await eventually(
                lambda: {("web", SPAN_KIND_CLIENT), ("backend", SPAN_KIND_SERVER)}
                <= set(spans()) and spans(), timeout=30,
                what="the client span of web's sidecar and the server span of backend's")
            client, server = found["web", SPAN_KIND_CLIENT], found["backend", SPAN_KIND_SERVER]
            assert server.parent_id == client.span_id
    finally:
        await receiver.stop()


# -- MeshMetric ------------------------------------------------------------------------------

async def test_metric_serves_envoy_stats_in_prometheus_format(lab: Lab) -> None:
    port = listen_port()
    async with lab.env.policy(policy("MeshMetric", "prometheus", {
            "targetRef": {"kind": "MeshService", "name": "web"},
            "default": {"backends": [{"type": "Prometheus",
                                      "prometheus": {"port": port, "path": "/metrics"}}]}})):
        assert statuses(await requests(lab.backend, count=3)) == {200: 3}
        async with httpx.AsyncClient(timeout=5) as client:
            scrape = await client.get(f"http://127.0.0.1:{port}/metrics")
            other = await client.get(f"http://127.0.0.1:{port}/config_dump")
        assert scrape.status_code == 200
        assert "# TYPE envoy_cluster_upstream_rq_total counter" in scrape.text
        assert any(line.startswith("envoy_cluster_upstream_rq_total{")
                   and 'envoy_cluster_name="backend"' in line
                   for line in scrape.text.splitlines())
        assert other.status_code == 404  # only the stats, not the rest of the admin API


# -- NACK ------------------------------------------------------------------------------------

async def test_a_nacked_config_leaves_envoy_on_its_last_good_config(lab: Lab) -> None:
    """A listener on a port that is taken is a config Envoy rejects: it cannot bind it."""

    async def web_xds() -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=5) as client:
            answer = await client.get(
                f"{lab.env.cp.api_url}/dataplanes/_overviews",
                headers={"authorization": f"Bearer {lab.env.cp.admin_token}"})
        [web] = [i for i in answer.json()["items"] if i["name"] == "web-1"]
        return dict(web["xds"])

    before = await web_xds()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        [metric] = await lab.env.apply(policy("MeshMetric", "on-a-taken-port", {
            "targetRef": {"kind": "MeshService", "name": "web"},
            "default": {"backends": [{"type": "Prometheus", "prometheus": {"port": port}}]}}),
            converge=False)

        async def nacked() -> dict[str, Any] | None:
            xds = await web_xds()
            return xds if xds["nacked"] > before["nacked"] else None

        xds = await eventually(nacked, timeout=20, what="the zone CP to report web-1's NACK")
        assert str(port) in xds["lastNack"], xds["lastNack"]
        listeners = (await lab.web.admin("/listeners")).text
        assert f":{port}" not in listeners
        assert statuses(await requests(lab.backend, count=5)) == {200: 5}
    await lab.env.delete(metric)
    assert statuses(await requests(lab.backend, count=5)) == {200: 5}


# -- certificate rotation --------------------------------------------------------------------

ROTATING = "rotating"


async def test_certificates_rotate_under_load_without_a_failed_request(lab: Lab) -> None:
    mesh = {"type": "Mesh", "name": ROTATING, "mtls": {
        "enabledBackend": "ca-1", "mode": "strict", "backends": [
            {"name": "ca-1", "type": "builtin", "dpCert": {"rotation": {"expiration": "6s"}}}]}}
    allow = policy("MeshTrafficPermission", "allow-all", {
        "targetRef": {"kind": "Mesh"},
        "from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}]},
        mesh=ROTATING)
    # The client sidecar opens a new connection to the server's every second, so the
    # load keeps shaking hands with whatever certificates the two hold at that moment.
    recycle = policy("MeshTimeout", "recycle", {"to": [{
        "targetRef": {"kind": "MeshService", "name": "server"},
        "default": {"http": {"maxConnectionDuration": "1s"}}}]}, mesh=ROTATING)
    app = HttpApp("server-1").start()
    outbound = listen_port()
    resources = await lab.env.apply(mesh, allow, recycle)
    try:
        async with lab.env.running(
                Member("client-1", "client", listen_port(), mesh=ROTATING,
                       outbounds={"server": outbound}),
                Member("server-1", "server", app.port, mesh=ROTATING)) as sidecars:
            report = await _load(outbound, sidecars, seconds=20)
    finally:
        app.stop()
        await lab.env.delete(*reversed(resources))
    assert report.failures == [], report.failures[:5]
    assert report.requests >= 200, report.requests
    for name, serials in report.serials.items():
        assert len(serials) >= 3, (name, serials)  # 6 s certificates, renewed at 4 s
    assert report.handshakes >= 10, report.handshakes


@dataclass
class LoadReport:
    requests: int
    failures: list[str]
    serials: dict[str, set[str]]
    handshakes: int


async def _load(port: int, sidecars: list[Sidecar], seconds: float) -> LoadReport:
    """Sequential requests for ``seconds``, noting the certificates each sidecar holds."""
    server = sidecars[-1]
    handshakes = "ssl\\.handshake$"
    before = sum((await server.stats(handshakes)).values())
    report = LoadReport(0, [], {s.name: set() for s in sidecars}, 0)
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(timeout=5) as client:
        while time.monotonic() < deadline:
            try:
                reply = await request(client, port, "/")
                if reply.status != 200:
                    report.failures.append(f"{reply.status} {reply.body}")
            except httpx.HTTPError as exc:
                report.failures.append(repr(exc))
            report.requests += 1
            if report.requests % 25 == 0:
                for sidecar in sidecars:
                    report.serials[sidecar.name] |= await sidecar.certificate_serials()
    report.handshakes = sum((await server.stats(handshakes)).values()) - before
    return report
