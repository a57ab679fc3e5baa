"""Issue 15's chaos test: a production topology of real processes survives its faults.

Three global replicas on one PostgreSQL, two zones of two zone CP replicas each (each
zone on a database of its own), real sidecars and an ingress with Envoys, calls from west
to east every 20 ms and a policy write every 50 ms through the global replicas in turn
(``tests/integration/chaos_env.py``, ``chaos_load.py``, ``chaos_run.py``). Faults, in
turn: kill -9 the global leader, kill -9 east's zone CP leader (the replica its sidecars
and ingress are connected to), kill -9 a global replica and a west zone CP replica that
do not lead (web's sidecar is connected to that one), stop PostgreSQL for 10 s.

- a new leader within 15 s of each fault (of PostgreSQL's return for the outage), and
  the leaders unchanged when followers die;
- every write answered 2xx is at every global replica and in every zone at the end,
  with the last acknowledged value; none lost or stored twice (each name's version is
  one plus the writes that landed);
- not one call on the data path failed;
- ``/zones/_overviews`` (what ``gossamer inspect zones`` reads) the same on every replica.

``.venv/bin/python -m tests.bench.bench_chaos`` runs the same scenario and prints its
numbers (``docs/benchmarks.md``, "Leader failover").
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.chaos_env import Topology, topology
from tests.integration.chaos_run import NEW_LEADER_WITHIN, run_chaos
from tests.pg import PostgresCluster

pytestmark = pytest.mark.postgres


@pytest.fixture
def env(tmp_path: Path, postgres_cluster: PostgresCluster) -> Iterator[Topology]:
    # The session's cluster only for its skip (or failure) where PostgreSQL cannot run:
    # the test stops a cluster of its own, which no other test shares.
    with topology(tmp_path) as running:
        yield running
        print(running.logs())  # captured: shown when the test fails


def test_the_mesh_rides_out_leader_kills_a_follower_kill_and_a_database_outage(
    env: Topology,
) -> None:
    report = run_chaos(env)
    print(report.summary())

    assert [f.what for f in report.faults][:2] == [
        "kill -9 the global leader",
        "kill -9 the east zone CP leader",
    ]
    for fault in report.faults:
        assert fault.new_leader_s < NEW_LEADER_WITHIN, fault
        assert "none" not in fault.leaders_after.values(), fault

    writer = report.writer
    assert writer.errors == []
    acked = [w for w in writer.writes if w.acked]
    assert len(acked) >= 100, "too few writes to say anything"
    assert all(w.landed for w in writer.writes)
    # Every name holds its last write at the version that counts every landed write:
    # checked at every global replica and zone CP replica before run_chaos returned.
    assert {w.name for w in acked} == set(writer.expected())

    # The zone CP kills hit the replicas the agents were connected to: each moved.
    for agent in env.agents:
        assert "registered again with the control plane" in agent.log(), agent.name

    failures = report.traffic.failures()
    assert len(report.traffic.calls) > 100
    assert failures == [], failures[:10]

    first = report.overviews[0]
    assert all(seen == first for seen in report.overviews)
