"""Observability policies on real traffic: MeshAccessLog writes JSON lines, MeshTrace reaches
an OTLP receiver with client and server spans, MeshMetric serves Envoy's stats in
Prometheus format.

One zone per module (the ``lab`` fixture, ``conftest.py`` here): ``web-1`` (service ``web``,
tag ``team: frontend``) calls ``backend`` (``backend-1`` v1 and ``backend-2`` v2, HTTP) and
``echo`` (``echo-1`` v1 and ``echo-2`` v2, TCP) through explicit outbounds. Each test applies
its policies, waits until every Envoy uses the config that follows
(``DataplaneEnv.converged``), drives traffic, asserts on what the client and the backends
saw, and deletes its policies (waiting again), so the tests do not depend on each other.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from tests.dataplane_apps import OtlpReceiver, listen_port, requests, statuses
from tests.integration.traffic.policies import Lab, policy, to_backend
from tests.waiting import eventually

pytestmark = pytest.mark.asyncio(loop_scope="module")


SPAN_KIND_SERVER = 2


SPAN_KIND_CLIENT = 3


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

