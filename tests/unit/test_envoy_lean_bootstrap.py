"""What keeps Envoy lean: in the bootstrap (``EnvoyLimits``) the stats matcher, the
overload manager and their overrides from the environment; buffer limits there and on
every generated listener and cluster."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.agent.bootstrap import (
    CONNECTIONS_MONITOR,
    HEAP_MONITOR,
    EnvoyLimits,
    bootstrap,
    limits_from_environ,
)
from proxy.agent.errors import InputError
from proxy.envoy import ProxyResources
from proxy.limits import BUFFER_LIMIT
from proxy.stats_matcher import kept
from tests.unit.envoy_scenarios import SCENARIOS, generated
from tests.unit.ingress_scenarios import SCENARIOS as INGRESS_SCENARIOS
from tests.unit.test_agent_bootstrap import params
from zone_ingress.envoy import generate_ingress


def actions(doc: dict[str, Any]) -> dict[str, tuple[str, float]]:
    return {a["name"]: (a["triggers"][0]["name"], a["triggers"][0]["threshold"]["value"])
            for a in doc["overload_manager"]["actions"]}


def test_the_default_bootstrap_keeps_the_mesh_stats_and_bounds_heap_and_connections() -> None:
    doc = bootstrap(params())
    patterns = doc["stats_config"]["stats_matcher"]["inclusion_list"]["patterns"]
    assert patterns and all("safe_regex" in p for p in patterns)
    assert doc["deferred_stat_options"] == {"enable_deferred_creation_stats": True}
    monitors = {m["name"]: m["typed_config"] for m in doc["overload_manager"]["resource_monitors"]}
    assert monitors[HEAP_MONITOR]["max_heap_size_bytes"] == 1 << 30
    assert monitors[CONNECTIONS_MONITOR]["max_active_downstream_connections"] == 10_000
    assert actions(doc) == {"envoy.overload_actions.shrink_heap": (HEAP_MONITOR, 0.90),
                            "envoy.overload_actions.stop_accepting_requests": (HEAP_MONITOR,
                                                                              0.95)}
    # The agent drains Envoy and inspect reads it through the admin, whatever the load.
    assert doc["admin"]["ignore_global_conn_limit"] is True
    clusters = doc["static_resources"]["clusters"]
    assert [c["per_connection_buffer_limit_bytes"] for c in clusters] == [BUFFER_LIMIT] * 3


def test_every_stat_the_mesh_reads_is_kept_and_internals_are_not() -> None:
    for name in ("server.live", "control_plane.connected_state",
                 "cluster.backend.upstream_cx_total",
                 "cluster.backend.default.mesh.upstream_cx_total",
                 "cluster.backend.upstream_rq_pending_overflow", "cluster.backend.upstream_rq_time",
                 "cluster.backend.outlier_detection.ejections_active",
                 "cluster.backend.ssl.handshake", "cluster.backend.ssl.versions.TLSv1.3",
                 "listener.10.0.0.1_80.ssl.handshake", "http.admin.downstream_rq_total",
                 "tcp.backend_default_mesh.downstream_cx_total",
                 "listener_manager.total_listeners_draining", "inbound_10_0_0_1_80.rbac.denied",
                 "overload.envoy.overload_actions.stop_accepting_requests.active",
                 "http.outbound_backend.downstream_rq_5xx", "http.inbound_80.rbac.denied",
                 "listener.outbound_backend.downstream_global_cx_overflow"):
        assert kept(name), name
    for name in ("cluster.backend.update_attempt", "cluster.backend.version",
                 "cluster.backend.default.mesh.lb_zone_routing_sampled", "runtime.num_keys",
                 "filesystem.write_total_buffered", "workers.watchdog_miss",
                 "http.outbound_backend.downstream_cx_http1_active",
                 "listener.inbound_10_0_0_1_80.worker_0.downstream_cx_active"):
        assert not kept(name), name


def test_all_stats_and_no_overload_manager_when_overridden() -> None:
    limits = limits_from_environ({"GOSSAMER_ENVOY_STATS": "all",
                                  "GOSSAMER_ENVOY_MAX_HEAP": "off",
                                  "GOSSAMER_ENVOY_MAX_CONNECTIONS": "off"})
    assert limits == EnvoyLimits(mesh_stats=False, max_heap_bytes=None, max_connections=None)
    doc = bootstrap(params(limits=limits))
    assert "stats_config" not in doc and "deferred_stat_options" not in doc
    assert "overload_manager" not in doc


def test_overrides_take_units_and_leave_the_rest_at_the_defaults() -> None:
    assert limits_from_environ({}) == EnvoyLimits()
    assert limits_from_environ({"GOSSAMER_ENVOY_MAX_HEAP": "512Mi"}) == EnvoyLimits(
        max_heap_bytes=512 << 20)
    assert limits_from_environ({"GOSSAMER_ENVOY_MAX_HEAP": "2Gi"}).max_heap_bytes == 2 << 30
    only_connections = limits_from_environ({"GOSSAMER_ENVOY_MAX_CONNECTIONS": "200",
                                            "GOSSAMER_ENVOY_MAX_HEAP": "OFF"})
    doc = bootstrap(params(limits=only_connections))
    assert [m["name"] for m in doc["overload_manager"]["resource_monitors"]] == [
        CONNECTIONS_MONITOR]
    assert doc["overload_manager"]["actions"] == []


@pytest.mark.parametrize(("variable", "value", "says"), [
    ("GOSSAMER_ENVOY_STATS", "some", "expected mesh"),
    ("GOSSAMER_ENVOY_MAX_HEAP", "1GB", "expected off or a whole number"),
    ("GOSSAMER_ENVOY_MAX_HEAP", "-5", "expected off or a whole number"),
    ("GOSSAMER_ENVOY_MAX_HEAP", "1Mi", "between 64 MiB"),
    ("GOSSAMER_ENVOY_MAX_HEAP", "9" * 40, "expected off or a whole number"),
    ("GOSSAMER_ENVOY_MAX_CONNECTIONS", "0", "between 1 and"),
    ("GOSSAMER_ENVOY_MAX_CONNECTIONS", "10Ki", "expected off or a whole number"),
])
def test_a_bad_override_is_an_input_error_naming_the_variable(variable: str, value: str,
                                                              says: str) -> None:
    with pytest.raises(InputError) as caught:
        limits_from_environ({variable: value})
    assert caught.value.detail.startswith(variable)
    assert says in caught.value.detail


def _without_limit(resources: ProxyResources) -> list[str]:
    every = [*resources.listeners.values(), *resources.clusters.values()]
    return [m.name for m in every if m.per_connection_buffer_limit_bytes.value != BUFFER_LIMIT]


def test_every_generated_listener_and_cluster_has_the_buffer_limit() -> None:
    sidecars = [generated(s) for s in SCENARIOS]
    ingresses = [generate_ingress(s.ctx) for s in INGRESS_SCENARIOS]
    assert sum(len(r.listeners) + len(r.clusters) for r in sidecars + ingresses) > 50
    assert [name for r in sidecars + ingresses for name in _without_limit(r)] == []
