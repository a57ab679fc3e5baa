"""The zone CA on two zone CP replicas sharing one real PostgreSQL store.

Replica ``one`` is a real ``gossamer zone run`` process and leads (it started first);
replica ``two`` runs in this process and follows. Agents speaking the real agent API get
certificates from either replica, chained to the one stored intermediate; the zone's
``ZoneTrustStatus`` counts the sidecars of both (the leader's keeper merges the
follower's record), and the follower never writes CA state: its keeper never ran and
none of its writes was fenced off. ``kill -9`` of the leader: ``two`` takes over the
keeper, and a rotation of the intermediate (moved to its renewal point with the
keeper's clock) goes through: a new key, a new certificate, both replicas' next
certificates chained to it, including a replica process started after the rotation.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from authority.token_authority import TokenAuthority
from gossamer.errors import NotFound
from gossamer.model.zonetrust import ZoneTrustStatusSpec
from gossamer.pki.certs import public_der
from gossamer.pki.names import zone_key_secret_name
from gossamer.tokens import DATAPLANE
from tests.integration.cli_env import Proc
from tests.integration.zone_replicas_env import (
    MESH,
    Agent,
    in_process_replica,
    leads,
    replica_process,
    xds_of,
)
from tests.waiting import eventually
from zone_cp.app import ZoneControlPlane

pytestmark = pytest.mark.postgres

TAKEOVER = 15.0


@contextlib.asynccontextmanager
async def closing(*agents: Agent) -> AsyncIterator[None]:
    try:
        yield
    finally:
        for agent in agents:
            await agent.close()


async def zone_status(cp: ZoneControlPlane) -> ZoneTrustStatusSpec | None:
    with contextlib.suppress(NotFound):
        spec = (await cp.manager.get("ZoneTrustStatus", MESH)).spec
        return spec if isinstance(spec, ZoneTrustStatusSpec) else None
    return None


async def counts_both(cp: ZoneControlPlane) -> bool:
    status = await zone_status(cp)
    return status is not None and status.dataplanes == 2 and sum(status.certificates.values()) == 2


async def test_replicas_sign_with_one_intermediate_and_the_keeper_moves_on_kill(
    tmp_path: Path, postgres_db_url: str
) -> None:
    procs: list[Proc] = []
    two: ZoneControlPlane | None = None
    try:
        one = await asyncio.to_thread(replica_process, tmp_path, "one", postgres_db_url)
        procs.append(one)
        await eventually(lambda: leads(one.api), 15, "replica one to lead")
        two = await in_process_replica(tmp_path / "two", postgres_db_url)
        assert not two.election.is_leader
        authority = TokenAuthority(two.manager, DATAPLANE, MESH)
        at_one = Agent("web-1", (await authority.issue("web", 600))[0])
        at_two = Agent("web-2", (await authority.issue("web", 600))[0])
        async with closing(at_one, at_two):
            await at_one.connect(xds_of(one), tmp_path / "one" / "tls" / "ca.pem")
            await at_two.connect(f"127.0.0.1:{two.xds.port}", two.tls.ca_file)
            first, second = await at_one.signed(), await at_two.signed()
            assert first[1] == second[1]  # one intermediate, whichever replica signs
            assert first[0].public_key() != second[0].public_key()
            # The leader's report counts the follower's sidecar too.
            await eventually(lambda: counts_both(two), 20, "both replicas' sidecars counted")
            assert not two.election.is_leader and two.election.fenced_off == 0

            # kill -9 the leader: two takes the keeper over.
            assert one.popen is not None
            one.popen.kill()
            one.popen.wait()
            await eventually(lambda: two.election.is_leader, TAKEOVER, "two to lead")

            # The intermediate's renewal point: the new keeper asks with a pending key
            # (kept there until asked), the mesh CA signs it, the keeper promotes it.
            keeper = two.parts.ca_keeper
            keeper.clock = lambda: dt.datetime.now(dt.UTC) + dt.timedelta(days=6)

            async def asked() -> bool:
                with contextlib.suppress(NotFound):
                    await two.manager.get("GlobalSecret", zone_key_secret_name(MESH, True))
                    return True
                return False

            await eventually(asked, 20, "a pending key for the intermediate's renewal")
            keeper.clock = lambda: dt.datetime.now(dt.UTC)

            async def rotated() -> bool:
                chain = await at_two.sign()
                return chain is not None and public_der(chain[1].public_key()) != public_der(
                    first[1].public_key()
                )

            await eventually(rotated, 30, "two to sign with the renewed intermediate")
            renewed = await at_two.signed()
            # A replica started now signs with the renewed intermediate too.
            three = await asyncio.to_thread(replica_process, tmp_path, "three", postgres_db_url)
            procs.append(three)
            at_three = Agent("web-3", (await authority.issue("web", 600))[0])
            async with closing(at_three):
                await at_three.connect(xds_of(three), tmp_path / "three" / "tls" / "ca.pem")
                assert (await at_three.signed())[1] == renewed[1]
            assert not await leads(three.api)
    finally:
        if two is not None:
            await two.stop()
        for proc in procs:
            await asyncio.to_thread(proc.stop)
