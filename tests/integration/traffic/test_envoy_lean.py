"""A real sidecar's Envoy runs lean (``proxy.agent.bootstrap.EnvoyLimits``): the stats the
mesh reads are there, those it never reads are not, a cluster's traffic stats appear
when it first carries traffic, and the overload manager watches the heap and the
connections. The lab (``conftest``): web-1 calls backend (HTTP) and echo (TCP)."""

from __future__ import annotations

import httpx

from tests.dataplane_apps import echo
from tests.integration.traffic.policies import Lab


async def test_the_stats_the_mesh_reads_are_kept_and_the_others_are_not(lab: Lab) -> None:
    web = lab.web
    async with httpx.AsyncClient(timeout=5) as client:
        assert (await client.get(f"http://127.0.0.1:{lab.backend}/")).status_code == 200
    assert await web.stat("server.live") == 1
    assert await web.stat("control_plane.connected_state") == 1
    assert await web.stat("cluster.backend.upstream_rq_total") >= 1
    assert await web.stat("cluster.backend.upstream_cx_total") >= 1
    assert await web.stat("cluster.backend.membership_healthy") == 2
    kept = await web.stats(r"^cluster\.backend\.")
    assert "cluster.backend.upstream_rq_pending_overflow" in kept
    assert "cluster.backend.circuit_breakers.default.rq_open" in kept
    # Envoy has these without the matcher; the mesh reads none of them.
    dropped = await web.stats(r"^(cluster\.backend\.(update_attempt|version|lb_subsets_active)"
                              r"|runtime\.num_keys|filesystem\.write_total_buffered)$")
    assert dropped == {}


async def test_a_cluster_gets_its_traffic_stats_with_its_first_connection(lab: Lab) -> None:
    """Nothing in this module called echo before: its traffic stats do not exist yet."""
    web = lab.web
    assert await web.stat("cluster.echo.membership_total") == 2
    assert await web.stats(r"^cluster\.echo\.upstream_cx_") == {}
    assert (await echo(lab.echo)).endswith(b":ping")
    assert await web.stat("cluster.echo.upstream_cx_total") == 1


async def test_the_overload_manager_watches_heap_and_connections(lab: Lab) -> None:
    stats = await lab.web.stats(r"^overload\.")
    assert stats["overload.envoy.overload_actions.stop_accepting_requests.active"] == 0
    assert stats["overload.envoy.overload_actions.shrink_heap.active"] == 0
    # Pressure in percent of the 1 GiB budget: an idle sidecar's few MiB read as ~0-2.
    assert stats["overload.envoy.resource_monitors.fixed_heap.pressure"] < 5
    # Envoy's admin serves whatever the connection limit: the agent drains through it.
    assert (await lab.web.admin("/ready")).status_code == 200
