"""The stats matcher (``proxy.stats_matcher``) in a real Envoy, on the generated configs.

Each scenario's generated resources run twice in a real Envoy (a static bootstrap as in
``test_envoy_accepts``, listeners moved to 127.0.0.1 on ports the kernel picks): once
with every stat, once with the sidecar bootstrap's ``stats_config``. Checked:

- Envoy keeps exactly the stats ``stats_matcher.kept`` says (Envoy's RE2 full match and
  the module's Python regexes agree);
- every stat dropped is of a family this test lists as nobody's concern, written here
  independently of the module: a family the mesh reads that the matcher forgot (a
  network filter rooting its stats at its own prefix, say) fails here;
- the stats the mesh reads (``inspect``, the agent's drain, the traffic tests) exist.

With ``enable_deferred_creation_stats`` (the bootstrap sets it too) a cluster's traffic
stats appear once it carries traffic: ``test_envoy_lean_sidecar`` checks that through a
real sidecar.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.agent.bootstrap import EnvoyLimits, lean_sections
from proxy.envoy_binary import envoy_binary
from proxy.stats_matcher import kept
from tests.integration.agent_env import free_port
from tests.integration.test_envoy_accepts import secrets, static_bootstrap  # noqa: F401
from tests.unit.envoy_scenarios import SCENARIOS, Scenario, as_data, generated
from tests.waiting import eventually

# What the matcher may drop, and nothing else (see proxy.stats_matcher's notes).
DROPPABLE = re.compile(
    r"cluster\..+\.(?:update_\w+|assignment_\w+|version|warming_state|lb_(?!healthy_panic)\w+"
    r"|upstream_flow_control_\w+|upstream_internal_redirect_\w+|upstream_http3_broken"
    r"|original_dst_host_invalid|bind_errors|max_host_weight|retry_or_shadow_abandoned"
    r"|default\.total_match_count|circuit_breakers\.high\.\w+|ssl\.ocsp_staple_\w+"
    r"|ssl\.fail_verify_cert_hash)"
    r"|tcp\.[^.]+\.(?:upstream_flush_\w+|route_delayed_total|early_data_received_count_total"
    r"|downstream_flow_control_\w+|downstream_cx_(?:rx|tx)_bytes_buffered|downstream_cx_drain_close)"
    r"|listener\.[^.]+\.(?:worker_\d+\.\w+|connections_accepted_per_socket_event"
    r"|downstream_listener_filter_remote_close|downstream_pre_cx_active"
    r"|extension_config_missing|network_extension_config_missing)"
    r"|http\.[^.]+\.(?:downstream_cx_(?:http[123]_\w+|ssl_\w+|upgrades_\w+|rx_bytes_buffered"
    r"|tx_bytes_buffered|delayed_close_timeout|drain_close|max_duration_reached"
    r"|max_requests_reached|overload_disable_keepalive)|downstream_flow_control_\w+"
    r"|downstream_rq_(?:http[123]_total|failed_path_normalization|non_relative_path"
    r"|redirected_with_normalized_path|rejected_via_ip_detection"
    r"|response_before_rq_complete|too_many_premature_resets|ws_on_non_ws_route)"
    r"|passthrough_internal_redirect_\w+|rq_redirect|rq_reset_after_downstream_response_started)"
    r"|(?:runtime|filesystem|main_thread|workers|thread_local_cluster_manager)\..+")
# Read by the agent (drain), ``inspect`` and the tests, in every sidecar.
ALWAYS_READ = ("server.live", "server.memory_allocated", "http.admin.downstream_rq_total",
               "listener.admin.downstream_cx_active",
               "listener_manager.total_listeners_draining")
# Read per cluster by the traffic tests and served by MeshMetric's dashboards.
CLUSTER_READ = ("upstream_cx_total", "upstream_cx_destroy", "upstream_rq_total",
                "upstream_rq_pending_overflow", "upstream_rq_timeout", "upstream_rq_retry",
                "membership_healthy", "circuit_breakers.default.rq_open")
# Per HTTP connection manager, what MeshMetric's dashboards read.
HTTP_READ = ("downstream_rq_total", "downstream_rq_2xx", "downstream_rq_5xx",
             "downstream_rq_time", "downstream_cx_active", "downstream_rq_timeout")
NAMES = ("traffic-permission", "circuit-breaker", "health-check", "rate-limit-http",
         "rate-limit-tcp", "fault-injection", "retry", "tcp", "metric")
CHOSEN = [s for s in SCENARIOS if s.name in NAMES]


def on_loopback(doc: dict[str, Any]) -> dict[str, Any]:
    """Every listener on 127.0.0.1, port 0: the scenarios' addresses are not this host's."""
    for listener in doc["static_resources"]["listeners"]:
        listener["address"] = {"socket_address": {"address": "127.0.0.1", "port_value": 0}}
    return doc


@contextlib.asynccontextmanager
async def running(doc: dict[str, Any], tmp: Path) -> AsyncIterator[int]:
    """Envoy on ``doc`` with an admin port, until it is ready; yields the admin port."""
    admin = free_port()
    doc.setdefault("admin", {})["address"] = {"socket_address": {"address": "127.0.0.1",
                                                                 "port_value": admin}}
    path = tmp / f"envoy-{admin}.json"
    path.write_text(json.dumps(doc))
    log = (tmp / f"envoy-{admin}.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        str(envoy_binary()), "--config-path", str(path), "--concurrency", "1",
        "--log-level", "warning", "--disable-hot-restart", stdout=log, stderr=log)
    try:
        async def ready() -> bool:
            assert proc.returncode is None, f"Envoy exited: {(tmp / path.name).read_text()}"
            async with httpx.AsyncClient(timeout=1) as client:
                return (await client.get(f"http://127.0.0.1:{admin}/ready")).status_code == 200
        await eventually(ready, timeout=30, what="Envoy ready")
        yield admin
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()
        log.close()


async def stat_names(admin: int) -> set[str]:
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(f"http://127.0.0.1:{admin}/stats")).text
    return {line.partition(":")[0] for line in text.splitlines() if ":" in line}


@pytest.mark.parametrize("scenario", CHOSEN, ids=[s.name for s in CHOSEN])
async def test_the_matcher_drops_only_what_the_mesh_never_reads(
        scenario: Scenario, secrets: list[dict[str, Any]], tmp_path: Path  # noqa: F811
) -> None:
    def doc() -> dict[str, Any]:
        return on_loopback(static_bootstrap(as_data(generated(scenario)), secrets))

    lean = doc()
    lean["stats_config"] = lean_sections(EnvoyLimits())["stats_config"]
    async with running(doc(), tmp_path) as full_admin, running(lean, tmp_path) as lean_admin:
        full, trimmed = await stat_names(full_admin), await stat_names(lean_admin)
    assert trimmed == {name for name in full if kept(name)}
    dropped = full - trimmed
    assert dropped, "the matcher dropped nothing: nothing was checked"
    unexpected = [name for name in sorted(dropped) if not DROPPABLE.fullmatch(name)]
    assert unexpected == [], "\n".join(unexpected)
    assert set(ALWAYS_READ) <= trimmed
    clusters = {n.split(".")[1] for n in full if n.startswith("cluster.")
                and n.endswith(".upstream_cx_total") and n.count(".") == 2}
    assert clusters, "no cluster with a dotless name to check"
    for cluster in clusters:
        assert {f"cluster.{cluster}.{s}" for s in CLUSTER_READ} <= trimmed, cluster
    managers = {n.split(".")[1] for n in full if n.startswith("http.")
                and n.endswith(".downstream_rq_total") and n.count(".") == 2}
    for prefix in managers:
        assert {f"http.{prefix}.{s}" for s in HTTP_READ} <= trimmed, prefix
    listeners = {n.split(".")[1] for n in full if n.startswith("listener.")
                 and n.endswith(".no_filter_chain_match") and n.count(".") == 2}
    assert {f"listener.{name}.downstream_cx_active" for name in listeners} <= trimmed
    # A family a network filter roots at its own prefix is kept, where the scenario has one.
    for family in (".rbac.", "_rate_limit"):
        assert {n for n in full if family in n} <= trimmed
