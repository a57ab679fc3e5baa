"""A global replica cut off from PostgreSQL: it stops leading before another starts, and
an open transaction of its does not block the others' writes for long.

Replica ``a`` reaches the database through a relay that can go silent like a pulled
cable (no FIN, no RST: ``tests/integration/test_federation_zone_outages.Relay``); replica
``b`` reaches it directly. With ``a`` leading, the relay goes silent: ``a``'s renewals
time out, it stops its singleton work at its proven deadline, and only afterwards does
``b`` take the lease over, within 15 s. At no sample do both lead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from global_cp.app import GlobalControlPlane
from gossamer.model.base import Resource
from gossamer.model.mesh import MeshSpec
from gossamer.settings import GlobalSettings
from gossamer.store.postgres import PostgresStore
from tests.integration.federation_env import stop_or_show
from tests.integration.test_federation_zone_outages import Relay
from tests.pg import PostgresCluster
from tests.waiting import eventually

pytestmark = pytest.mark.postgres

LEASE = 3.0


async def start(data: Path, store: str) -> GlobalControlPlane:
    cp = GlobalControlPlane(GlobalSettings(data_dir=data, api_addr="127.0.0.1:0",
                                           sync_addr="127.0.0.1:0", store=store,
                                           leader_lease=LEASE))
    await cp.start()
    return cp


@pytest.fixture
async def relay(postgres_cluster: PostgresCluster) -> AsyncIterator[Relay]:
    r = Relay(postgres_cluster.port)
    await r.start()
    yield r
    await r.stop()


async def test_a_leader_cut_off_from_the_database_steps_down_before_a_takeover(
        tmp_path: Path, postgres_cluster: PostgresCluster, postgres_db_url: str,
        relay: Relay) -> None:
    database = postgres_db_url.split("@/", 1)[1].split("?", 1)[0]
    a = await start(tmp_path / "a", f"postgresql://postgres@127.0.0.1:{relay.port}/{database}")
    b = await start(tmp_path / "b", postgres_db_url)
    try:
        await eventually(lambda: a.election.is_leader, 15, "replica a to lead")
        assert not b.election.is_leader
        relay.cut()
        cut = time.monotonic()
        a_stopped = b_started = 0.0
        while not b_started:
            a_leads, b_leads = a.election.is_leader, b.election.is_leader
            assert not (a_leads and b_leads), "two leaders"
            now = time.monotonic() - cut
            if not a_leads and not a_stopped:
                a_stopped = now
            if b_leads:
                b_started = now
            assert now < 15, "no takeover within 15 s"
            await asyncio.sleep(0.02)  # pacing the samples (and letting both replicas run)
        assert 0 < a_stopped <= b_started
        print(f"a stopped after {a_stopped:.2f}s, b led after {b_started:.2f}s")
    finally:
        relay.heal()
        await stop_or_show(b)
        await stop_or_show(a, within=30)


async def test_a_writer_cut_off_mid_transaction_does_not_block_the_others_for_long(
        postgres_db_url: str, relay: Relay) -> None:
    """A replica whose cable is pulled inside a write transaction holds the revision lock
    only until the server ends the idle transaction (``SERVER_SETTINGS``), not until it
    notices the dead peer (hours): the other replicas' writes go on within seconds."""
    database = postgres_db_url.split("@/", 1)[1].split("?", 1)[0]
    cut_off = await PostgresStore.open(
        f"postgresql://postgres@127.0.0.1:{relay.port}/{database}")
    other = await PostgresStore.open(postgres_db_url)
    locked = asyncio.Event()

    async def hold_the_revision_lock() -> None:
        async with cut_off._transaction() as conn:  # what every write does first
            await conn.fetchval("SELECT value FROM store_revision FOR UPDATE")
            locked.set()
            await asyncio.Event().wait()  # the next statement never comes

    holder = asyncio.create_task(hold_the_revision_lock())
    try:
        await eventually(locked.is_set, 10, "the revision lock taken through the relay")
        relay.cut()
        began = time.monotonic()
        await other.create(Resource(type="Mesh", name="after-the-cut", spec=MeshSpec()))
        took = time.monotonic() - began
        assert took < 15, f"the write waited {took:.1f}s on a dead peer's lock"
        assert took > 1, "the lock was not held: the test proves nothing"
    finally:
        holder.cancel()
        relay.heal()
        await asyncio.gather(holder, return_exceptions=True)
        await other.close()
        await cut_off.close()
