"""A zone CP replica killed for good: the leader expires its sidecars, not moved ones.

Replica ``one`` runs in this process and leads; replica ``two`` is a real
``gossamer zone run`` process on the same PostgreSQL store. Two agents register through
``two`` (their Dataplanes stamped with its replica id). ``two`` is killed with
``kill -9`` and never comes back; one agent dies with it, the other moves to ``one``
(it registers there again). Once ``two``'s record has been silent for the bound and the
grace has passed, the leader removes the Dataplane of the agent that is gone; the one
that moved stays, stamped with ``one``; and ``two``'s record goes. A replica that was
only paused (SIGSTOP) past the bound stores its live sidecars again when it wakes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from authority.token_authority import TokenAuthority
from gossamer.errors import NotFound
from gossamer.model.labels import CP_REPLICA_LABEL
from gossamer.tokens import DATAPLANE
from tests.integration.cli_env import Proc
from tests.integration.zone_replicas_env import (
    MESH,
    Agent,
    data_of,
    in_process_replica,
    replica_process,
    stamp_of,
    xds_of,
)
from tests.waiting import eventually
from zone_cp.app import ZoneControlPlane

pytestmark = pytest.mark.postgres

GRACE = 5.0  # the leader's agent grace: how long a dead replica's agents may move
DEAD_AFTER = 12.0  # a record silent this long is a dead replica's (heartbeats every 5 s)


async def stamp(cp: ZoneControlPlane, name: str) -> str | None:
    """The replica stamp of Dataplane ``name`` (None once it is gone)."""
    try:
        res = await cp.manager.get("Dataplane", name, MESH)
    except NotFound:
        return None
    return res.labels.get(CP_REPLICA_LABEL, "")


async def test_a_dead_replicas_sidecars_expire_unless_their_agents_moved(
    tmp_path: Path, postgres_db_url: str
) -> None:
    one = await in_process_replica(tmp_path / "one", postgres_db_url, agent_grace=GRACE)
    proc: Proc | None = None
    agents: list[Agent] = []
    try:
        assert one.election.is_leader
        records, janitor = one.parts.replicas, one.parts.dead_replicas
        assert records is not None and janitor is not None
        records.dead_after = DEAD_AFTER
        proc = await asyncio.to_thread(replica_process, tmp_path, "two", postgres_db_url)
        two_id, one_id = stamp_of(data_of(proc)), stamp_of(tmp_path / "one")
        authority = TokenAuthority(one.manager, DATAPLANE, MESH)
        gone = Agent("gone-1", (await authority.issue("web", 600))[0])
        moved = Agent("moved-1", (await authority.issue("web", 600))[0])
        agents += [gone, moved]
        for agent in agents:
            await agent.connect(xds_of(proc), tmp_path / "two" / "tls" / "ca.pem")
            assert await stamp(one, agent.name) == two_id

        assert proc.popen is not None
        proc.popen.kill()  # for good
        proc.popen.wait()
        killed = time.monotonic()
        await gone.close()  # its agent is gone too
        await moved.connect(f"127.0.0.1:{one.xds.port}", one.tls.ca_file)
        assert await stamp(one, "moved-1") == one_id  # relabelled by the replica it moved to

        async def expired() -> bool:
            return await stamp(one, "gone-1") is None

        await eventually(expired, DEAD_AFTER + GRACE + 30, "the gone agent's Dataplane")
        # Not before the bound: two's last heartbeat was at most 5 s before the kill.
        assert time.monotonic() - killed >= DEAD_AFTER + GRACE - records.every - 1
        assert await stamp(one, "moved-1") == one_id

        async def record_gone() -> bool:
            replicas = {
                r.spec.replica
                for r in (await one.manager.list("ZoneCpReplica")).items
                if hasattr(r.spec, "replica")
            }
            return replicas == {one_id}

        await eventually(record_gone, 15, "two's record removed")
    finally:
        for agent in agents:
            await agent.close()
        await one.stop()
        if proc is not None:
            await asyncio.to_thread(proc.stop)


async def test_a_paused_replica_taken_for_dead_stores_its_sidecars_again(
    tmp_path: Path, postgres_db_url: str
) -> None:
    """SIGSTOP past the bound and the grace: the leader removes the Dataplane of the
    paused replica's agent (whose session is still open); woken with SIGCONT, the replica
    finds its record gone and stores its live sidecars again."""
    one = await in_process_replica(tmp_path / "one", postgres_db_url, agent_grace=GRACE)
    proc: Proc | None = None
    agent: Agent | None = None
    try:
        records = one.parts.replicas
        assert records is not None and one.election.is_leader
        records.dead_after = DEAD_AFTER
        proc = await asyncio.to_thread(replica_process, tmp_path, "two", postgres_db_url)
        two_id = stamp_of(data_of(proc))
        authority = TokenAuthority(one.manager, DATAPLANE, MESH)
        agent = Agent("web-1", (await authority.issue("web", 600))[0])
        await agent.connect(xds_of(proc), tmp_path / "two" / "tls" / "ca.pem")
        assert proc.popen is not None
        os.kill(proc.popen.pid, signal.SIGSTOP)
        try:

            async def expired() -> bool:
                return await stamp(one, "web-1") is None

            await eventually(expired, DEAD_AFTER + GRACE + 30, "the paused replica's sidecar")
        finally:
            os.kill(proc.popen.pid, signal.SIGCONT)

        async def restored() -> bool:
            return await stamp(one, "web-1") == two_id

        await eventually(restored, 20, "the sidecar stored again by its replica")
    finally:
        if agent is not None:
            await agent.close()
        await one.stop()
        if proc is not None:
            await asyncio.to_thread(proc.stop)
