"""Two replicas of one zone CP on one real PostgreSQL zone store: one leader syncs.

Both replicas serve (their APIs and xDS ports are up); only the holder of the zone's
lease runs the sync with the global (the global sees the two streams of one replica,
never four) and the VIP allocation. When the leader stops, the other takes the sync
over and what the global publishes keeps reaching the zone's store. Each replica's
``/metrics`` says which one syncs: ``gossamer_sync_active`` and its streams, labelled
with its role, 0 streams on the follower.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from gossamer.model.registry import parse_document
from gossamer.resources import ResourceManager
from tests.cluster import sample, scrape, start_global, start_zone, zone_token
from tests.integration.federation_env import (
    BEAT,
    DEAD_AFTER,
    converged,
    online,
    stop_or_show,
    timeout_policy,
)
from tests.waiting import eventually
from zone_cp.app import ZoneControlPlane

pytestmark = pytest.mark.postgres


async def syncing(z: ZoneControlPlane, role: str, streams: int) -> bool:
    """``z``'s /metrics says it is ``role`` and syncs on ``streams`` streams (0: idle)."""
    samples = await scrape(z.api_url)
    labels = {"zone": "east", "role": role}
    return (sample(samples, "gossamer_leader", lease="zone") == (role == "leader")
            and sample(samples, "gossamer_sync_active", **labels) == (streams > 0)
            and sample(samples, "gossamer_sync_streams", **labels) == streams
            and sample(samples, "gossamer_sync_connected", **labels) == (streams > 0))


async def test_one_replica_syncs_and_the_other_takes_over(tmp_path: Path,
                                                         postgres_db_url: str) -> None:
    g = await start_global(tmp_path / "global", "sqlite", BEAT, DEAD_AFTER)
    running: list[ZoneControlPlane] = []
    try:
        token, _ = await zone_token(g, "east", tmp_path / "east.token")
        for name in ("one", "two"):
            running.append(await start_zone(
                g, "east", tmp_path / name, store=postgres_db_url, heartbeat=BEAT,
                timeout=DEAD_AFTER, token_file=token, leader_lease=3.0))
        leader = await eventually(
            lambda: next((z for z in running if z.election.is_leader), None), 15,
            "a zone leader")
        follower = next(z for z in running if z is not leader)
        assert not follower.election.is_leader
        # One admin token and one CA behind the xDS port for both (one --cp-ca file).
        one, two = (tmp_path / name for name in ("one", "two"))
        assert running[0].admin_token == running[1].admin_token
        assert (one / "tls" / "ca.pem").read_bytes() == (two / "tls" / "ca.pem").read_bytes()
        assert (two / "admin-token").stat().st_mode & 0o777 == 0o600
        await eventually(lambda: online(g, "east"), 15, "the zone online at the global")
        for z in running:  # every replica serves its API
            async with httpx.AsyncClient(base_url=z.api_url) as client:
                assert (await client.get("/readyz")).status_code == 200
        await ResourceManager(g.store).apply(parse_document(timeout_policy("first", 5)))
        await eventually(lambda: converged([follower], {"first": "5s"}), 15,
                         "the policy in the shared zone store")
        assert g.insights.get("east").streams == 2  # the leader's streams, not four
        await eventually(lambda: syncing(leader, "leader", 2), 15, "the leader's metrics")
        await eventually(lambda: syncing(follower, "follower", 0), 15,
                         "the follower's metrics: idle")
        assert sample(await scrape(leader.api_url), "gossamer_sync_applied_total",
                      zone="east", role="leader") > 0

        running.remove(leader)
        await stop_or_show(leader)
        await eventually(lambda: follower.election.is_leader, 15, "the follower to lead")
        await eventually(lambda: online(g, "east"), 15, "the zone back online")
        await eventually(lambda: syncing(follower, "leader", 2), 15,
                         "the new leader's metrics: syncing")
        await ResourceManager(g.store).apply(parse_document(timeout_policy("second", 7)))
        await eventually(lambda: converged([follower], {"second": "7s"}), 15,
                         "the next policy through the new leader")
    finally:
        for z in running:
            await stop_or_show(z)
        await stop_or_show(g)
