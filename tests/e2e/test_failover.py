"""Locality and cross-zone failover, in network namespaces (``deploy.local``).

``backend`` runs in both zones (``backend-1`` in east, ``backend-2`` in west) and ``web-1``
in west calls ``http://backend.mesh/``. With no MeshLoadBalancingStrategy, west's own
instance serves while it is up; killed (app and sidecar, as a crashed pod), east serves
through its ingress; restarted, west serves again. With the Mesh's
``routing.zonePinnedNames``, ``backend.svc.east.mesh`` answers from east only and
``backend.svc.west.mesh`` from west only.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml

from deploy.local.environment import Environment
from deploy.local.topology import Topology, Workload
from tests.e2e.support import all_from, prefix, running, zones_of
from tests.waiting import eventually_sync

TOPOLOGY = Topology(zones=("east", "west"), prefix=prefix("f"), workloads=(
    Workload("backend-1", "backend", "east"),
    Workload("backend-2", "backend", "west"),
    Workload("web-1", "web", "west"),
))


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Environment]:
    yield from running(TOPOLOGY, tmp_path_factory.mktemp("failover"))


def test_traffic_stays_local_fails_over_to_the_other_zone_and_returns(env: Environment
                                                                      ) -> None:
    # East's backend is known in west (through east's ingress) before the test relies on
    # it: west's zone CP offers it once east's ZoneIngress arrives over the sync.
    eventually_sync(lambda: "zone: east" in env.gossamer("get", "zoneingresses", "-o", "yaml",
                                                    zone="west"),
               timeout=60, what="east's ingress (offering backend) known in west")
    eventually_sync(lambda: all_from(env, "web-1", "backend", "west", n=10), timeout=60,
               what="web-1's calls served by backend-2 in its own zone")
    assert all_from(env, "web-1", "backend", "west", n=30)

    env.kill_workload("backend-2")
    eventually_sync(lambda: all_from(env, "web-1", "backend", "east", n=5), timeout=30,
               what="failover to backend-1 in east once backend-2 is gone")
    assert all_from(env, "web-1", "backend", "east", n=30)

    env.start_workload("backend-2")
    eventually_sync(lambda: all_from(env, "web-1", "backend", "west", n=10), timeout=30,
               what="traffic back in west once backend-2 returns")
    assert zones_of(env, "web-1", "backend", 30) == ["west"] * 30


def test_a_zone_pinned_name_answers_from_that_zone_only(env: Environment) -> None:
    # With the Mesh's routing.zonePinnedNames, backend.svc.east.mesh goes to east even
    # though west, the caller's zone, has an instance that backend.mesh prefers.
    mesh = yaml.safe_load(env.gossamer("get", "mesh", "default", "-o", "yaml"))
    mesh["routing"] = {"zonePinnedNames": True}
    env.apply(yaml.safe_dump(mesh))
    eventually_sync(lambda: all_from(env, "web-1", "backend.svc.east", "east", n=5),
                    timeout=60, what="backend.svc.east.mesh answered from east")
    assert zones_of(env, "web-1", "backend.svc.east", 30) == ["east"] * 30
    assert zones_of(env, "web-1", "backend.svc.west", 10) == ["west"] * 10
    assert zones_of(env, "web-1", "backend", 10) == ["west"] * 10
