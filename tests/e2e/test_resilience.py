"""Control planes going away, in network namespaces (``deploy.local``).

``backend-1`` in east, ``web-1`` in west calling ``http://backend.mesh/`` across zones;
heartbeats of 1 s with a 3 s timeout, so a dead peer is noticed in seconds.

- The global is killed (SIGKILL): both zones notice, and cross-zone calls keep working on
  what the zones and Envoys hold (static stability). It is started again on its data:
  the zones sync again, and a MeshTrafficPermission applied then reaches both zones and
  refuses web's call in east.
- Each zone CP is restarted in turn: calls keep working while it is down; its sidecars
  and its ingress connect again (their Envoys' ADS too), and every VIP is unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

import pytest

from deploy.local import probes
from deploy.local.environment import Environment
from deploy.local.topology import ENVOY_ADMIN_PORT, INGRESS_ADMIN_PORT, Topology, Workload
from tests.e2e.support import all_from, count, deny, prefix, running, status_of
from tests.waiting import eventually_sync

TOPOLOGY = Topology(zones=("east", "west"), prefix=prefix("r"), workloads=(
    Workload("backend-1", "backend", "east"),
    Workload("web-1", "web", "west"),
))
ZONES = TOPOLOGY.zones
LOST = "sync with the global at "  # the warning of a broken or refused stream
SYNCED = "in sync with the global"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Environment]:
    yield from running(TOPOLOGY, tmp_path_factory.mktemp("resilience"))


@pytest.fixture(scope="module")
def reachable(env: Environment) -> Environment:
    eventually_sync(lambda: all_from(env, "web-1", "backend", "east", n=3), timeout=60,
               what="web-1's first answers from backend in east")
    return env


def log_counts(env: Environment, text: str) -> dict[str, int]:
    return {zone: count(env, f"{zone}-cp", text) for zone in ZONES}


def grew(env: Environment, text: str, before: dict[str, int]) -> bool:
    now = log_counts(env, text)
    return all(now[zone] > before[zone] for zone in ZONES)


def test_calls_survive_the_global_and_a_policy_applied_after_it_returns_reaches_both_zones(
        reachable: Environment) -> None:
    env = reachable
    lost = log_counts(env, LOST)
    env.kill("global")
    eventually_sync(lambda: grew(env, LOST, lost), timeout=30,
               what="both zones to notice the global is gone")
    assert all_from(env, "web-1", "backend", "east", n=30)

    synced = log_counts(env, SYNCED)
    env.start("global")
    eventually_sync(lambda: grew(env, SYNCED, synced), timeout=60,
               what="both zones in sync with the returned global")
    eventually_sync(lambda: env.gossamer("inspect", "zones").count(" Online ") == len(ZONES),
               timeout=30, what="the global to see both zones online")
    assert all_from(env, "web-1", "backend", "east", n=5)

    env.apply(deny("web", "backend"))
    try:
        for zone in ZONES:
            eventually_sync(partial(has_permission, env, zone, "web-to-backend"), timeout=30,
                       what=f"the deny applied at the returned global to reach zone {zone}")
        eventually_sync(lambda: status_of(env, "web-1", "backend") == 403, timeout=30,
                   what="the deny to refuse web-1's call in east")
    finally:
        env.gossamer("delete", "meshtrafficpermission", "web-to-backend", "-m", "default")
    eventually_sync(lambda: all_from(env, "web-1", "backend", "east", n=3), timeout=30,
               what="calls again once the deny is deleted")


def vips(env: Environment) -> dict[str, list[str]]:
    """What backend.mesh and web.mesh resolve to, in each zone."""
    out = {}
    for client in ("web-1", "backend-1"):
        for name in ("backend.mesh", "web.mesh"):
            rcode, answers = probes.dig(env, client, name)
            assert rcode == "NOERROR" and answers, (client, name, rcode)
            out[f"{client}: {name}"] = answers
    return out


def connected(env: Environment, zone: str, dataplane: str) -> bool:
    """The zone CP (restarted: no memory of old sessions) has the agent's session and
    the ADS stream of its Envoy."""
    for item in env.api_get("/dataplanes/_overviews", zone=zone)["items"]:
        if item["name"] == dataplane:
            return bool(item["online"] and (item.get("xds") or {}).get("connected"))
    return False


def has_permission(env: Environment, zone: str, name: str) -> bool:
    listing = env.api_get("/meshes/default/meshtrafficpermissions", zone=zone)
    return name in [item["name"] for item in listing["items"]]


def ingress_registrations(env: Environment, zone: str) -> int:
    return count(env, f"{zone}-cp", f"zone ingress {zone}-ingress registered")


def ingress_registrations_above(env: Environment, zone: str, n: int) -> bool:
    return ingress_registrations(env, zone) > n


def envoy_connected(env: Environment, ns: str, port: int) -> bool:
    stats = probes.admin_get(env, ns, port, "/stats?filter=control_plane.connected_state")
    return "control_plane.connected_state: 1" in stats.splitlines()  # not SDS's


def test_a_restarted_zone_cp_gets_its_proxies_back_and_keeps_every_vip(
        reachable: Environment) -> None:
    env = reachable
    t = env.topology
    before = vips(env)
    for zone, dataplane in (("west", "web-1"), ("east", "backend-1")):
        registrations = ingress_registrations(env, zone)
        env.stop(f"{zone}-cp")
        assert all_from(env, "web-1", "backend", "east", n=20), f"{zone}'s CP down"
        env.start(f"{zone}-cp")
        eventually_sync(partial(connected, env, zone, dataplane), timeout=60,
                   what=f"{dataplane} back at zone {zone}'s restarted CP")
        eventually_sync(partial(ingress_registrations_above, env, zone, registrations), timeout=60,
                   what=f"{zone}'s ingress registered again")
        eventually_sync(partial(envoy_connected, env, t.ingress_ns(zone), INGRESS_ADMIN_PORT),
                   timeout=30, what=f"{zone}'s ingress Envoy on the ADS again")
        assert envoy_connected(env, t.workload_ns(dataplane), ENVOY_ADMIN_PORT)
        assert vips(env) == before
        assert all_from(env, "web-1", "backend", "east", n=10)
