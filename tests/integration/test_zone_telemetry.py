"""The zone CP's telemetry with real sidecars: Prometheus service discovery of their
metrics listeners, the xDS and certificate metrics on ``/metrics``, the ``ca.issue`` span.

A real zone CP in-process and two real sidecars (agents and Envoys, ``DataplaneEnv``):
``web-1`` and ``backend-1``. Two MeshMetrics give each a Prometheus listener on its own
port and path. ``/prometheus/http_sd`` is then read and checked the way Prometheus'
``http_sd`` discovery reads it (an ``application/json`` list of target groups, each
``targets`` a list of ``host:port`` strings, ``labels`` a map of valid label names to
strings), and every target it names is scraped at its ``__scheme__``, address and
``__metrics_path__``: Envoy's stats must come back.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from tests.cluster import sample, scrape, span_recorder
from tests.dataplane_apps import HttpApp, listen_port
from tests.dataplane_env import DataplaneEnv, Member
from tests.waiting import eventually
from zone_cp.http_sd import PATH

pytestmark = pytest.mark.asyncio(loop_scope="module")

# Prometheus' rules for http_sd (discovery/http): label names are model.LabelName-valid.
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
TARGET = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[^:\[\]/]+):\d{1,5}$")


def parse_http_sd(response: httpx.Response) -> list[tuple[str, dict[str, str]]]:
    """``(target, labels)`` pairs, or an AssertionError where Prometheus would refuse it."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].split(";")[0] == "application/json"
    groups = response.json()
    assert isinstance(groups, list)
    out = []
    for group in groups:
        assert set(group) <= {"targets", "labels"}, group
        labels = group.get("labels", {})
        assert all(isinstance(k, str) and LABEL_NAME.match(k) and isinstance(v, str)
                   for k, v in labels.items()), labels
        assert isinstance(group["targets"], list)
        for target in group["targets"]:
            assert isinstance(target, str) and TARGET.match(target), target
            out.append((target, labels))
    return out


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DataplaneEnv]:
    apps = [HttpApp(name).start() for name in ("web-1", "backend-1")]
    recorder = span_recorder()
    recorder.clear()
    try:
        async with DataplaneEnv(tmp_path_factory.mktemp("telemetry")) as env:
            await env.start(Member("web-1", "web", apps[0].port),
                            Member("backend-1", "backend", apps[1].port))
            yield env
    finally:
        for app in apps:
            app.stop()


def metric_policy(name: str, service: str, port: int, path: str) -> dict[str, Any]:
    return {"type": "MeshMetric", "name": name, "mesh": "default", "spec": {
        "targetRef": {"kind": "MeshService", "name": service},
        "default": {"backends": [{"type": "Prometheus",
                                  "prometheus": {"port": port, "path": path}}]}}}


async def test_http_sd_lists_every_sidecars_metrics_listener(env: DataplaneEnv) -> None:
    web_port, backend_port = listen_port(), listen_port()
    headers = {"Authorization": f"Bearer {env.cp.admin_token}"}
    policies = (metric_policy("web-metrics", "web", web_port, "/metrics"),
                metric_policy("backend-metrics", "backend", backend_port, "/stats/backend"))
    async with (env.policy(*policies),
                httpx.AsyncClient(base_url=env.cp.api_url, timeout=10) as client):
        assert (await client.get(PATH)).status_code == 401  # the admin token's
        found = parse_http_sd(await client.get(PATH, headers=headers))
        by_dataplane = {labels["__meta_gossamer_dataplane"]: (target, labels)
                        for target, labels in found}
        assert set(by_dataplane) == {"web-1", "backend-1"}
        target, labels = by_dataplane["backend-1"]
        assert target == f"127.0.0.1:{backend_port}"
        assert labels == {"__metrics_path__": "/stats/backend", "__scheme__": "http",
                          "__meta_gossamer_mesh": "default",
                          "__meta_gossamer_dataplane": "backend-1",
                          "__meta_gossamer_service": "backend",
                          "__meta_gossamer_zone": "lab"}
        assert by_dataplane["web-1"][0] == f"127.0.0.1:{web_port}"
        for target, labels in found:  # scrape each as Prometheus would
            scraped = await client.get(
                f"{labels['__scheme__']}://{target}{labels['__metrics_path__']}")
            assert scraped.status_code == 200, target
            families = {f.name for f in text_string_to_metric_families(scraped.text)}
            assert "envoy_server_live" in families, target
    # The policies are gone: so are the listeners, and the targets.
    async with httpx.AsyncClient(base_url=env.cp.api_url, timeout=10) as client:
        assert parse_http_sd(await client.get(PATH, headers=headers)) == []


async def test_metrics_carry_push_latency_connected_proxies_and_certificates(
        env: DataplaneEnv) -> None:
    samples = await scrape(env.cp.api_url)
    assert sample(samples, "gossamer_xds_proxies_connected", proxy="sidecar") == 2
    assert sample(samples, "gossamer_xds_proxies_connected", proxy="ingress") == 0
    assert sample(samples, "gossamer_xds_fleet_members") == 2
    # Every response so far was ACKed: each one timed, none over the last bucket's bound.
    count = sample(samples, "gossamer_xds_delivery_seconds_count", proxy="sidecar")
    assert count >= 2
    assert sample(samples, "gossamer_xds_delivery_seconds_bucket", proxy="sidecar",
                  le="+Inf") == count
    assert sample(samples, "gossamer_xds_delivery_seconds_sum", proxy="sidecar") > 0
    # Both sidecars' certificates (24 h by default) in the buckets up to a day.
    await eventually(lambda: all(s.certificate is not None
                                 for s in env.cp.agents.sessions.values()),
                     timeout=30, what="both agents to report their certificates")
    samples = await scrape(env.cp.api_url)
    cert = "gossamer_dataplane_certificate_remaining_seconds"
    assert sample(samples, f"{cert}_gcount", mesh="default") == 2
    assert sample(samples, f"{cert}_bucket", mesh="default", le="43200.0") == 0
    assert sample(samples, f"{cert}_bucket", mesh="default", le="86400.0") == 2


async def test_a_workload_certificate_issue_is_a_span(env: DataplaneEnv) -> None:
    spans = [s for s in span_recorder().get_finished_spans() if s.name == "ca.issue"]
    identities = {str((s.attributes or {}).get("gossamer.identity")) for s in spans}
    assert identities == {"spiffe://default/web", "spiffe://default/backend"}
    assert {(s.attributes or {}).get("gossamer.mesh") for s in spans} == {"default"}
