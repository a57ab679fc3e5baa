"""Leases and fenced writes on a real PostgreSQL (``gossamer.store.pg_leases``).

The lease row decides on the database's clock: one holder at a time, the epoch bumped when
the lease changes hands, a takeover only after it expired. A write fenced with an old
epoch is refused inside its transaction and stores nothing; a fenced write holds the
lease row so a takeover waits for its commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from gossamer.election.core import Fence, Timing
from gossamer.election.leases import Grant, Held, NotLeader
from gossamer.election.runner import Election
from gossamer.errors import NotFound
from gossamer.model.base import Resource
from gossamer.model.mesh import MeshSpec
from gossamer.store.base import Put
from gossamer.store.postgres import PostgresStore
from tests.waiting import eventually

pytestmark = pytest.mark.postgres


@pytest.fixture
async def stores(postgres_db_url: str) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    a = await PostgresStore.open(postgres_db_url)
    b = await PostgresStore.open(postgres_db_url)
    yield a, b
    await a.close()
    await b.close()


def mesh(name: str) -> Resource:
    return Resource(type="Mesh", name=name, spec=MeshSpec())


async def test_one_holder_and_a_takeover_only_after_expiry(
        stores: tuple[PostgresStore, PostgresStore]) -> None:
    a, b = stores[0].leases(), stores[1].leases()
    assert await a.acquire("global", "a", 0.5) == Grant(1)
    assert await b.acquire("global", "b", 0.5) == Held("a")
    assert await a.acquire("global", "a", 0.5) == Grant(1)  # a renewal keeps the epoch
    got = await eventually(lambda: _grant(b.acquire("global", "b", 30)), 10,
                           "b to take the expired lease")
    assert got == Grant(2)
    assert await a.acquire("global", "a", 30) == Held("b")
    await b.release("global", "b", 2)
    assert await a.acquire("global", "a", 30) == Grant(3)  # released: no wait
    await a.close()
    await b.close()


async def _grant(attempt: object) -> Grant | None:
    got = await attempt  # type: ignore[misc]
    return got if isinstance(got, Grant) else None


async def test_a_write_fenced_with_a_stale_epoch_is_refused_and_stores_nothing(
        stores: tuple[PostgresStore, PostgresStore]) -> None:
    sa, sb = stores
    a, b = sa.leases(), sb.leases()
    assert await a.acquire("global", "a", 0.3) == Grant(1)
    await a.write(sa, [Put(mesh("first"))], Fence("global", "a", 1))
    await eventually(lambda: _grant(b.acquire("global", "b", 30)), 10, "b takes over")
    with pytest.raises(NotLeader, match="epoch 1"):
        await a.write(sa, [Put(mesh("stale"))], Fence("global", "a", 1))
    with pytest.raises(NotFound):
        await sa.get("Mesh", "stale")
    await b.write(sb, [Put(mesh("fresh"))], Fence("global", "b", 2))
    assert (await sa.get("Mesh", "fresh")).name == "fresh"
    await a.close()
    await b.close()


async def test_an_expired_lease_fences_its_holder_even_before_anyone_takes_over(
        stores: tuple[PostgresStore, PostgresStore]) -> None:
    sa, _ = stores
    a = sa.leases()
    assert await a.acquire("global", "a", 0.2) == Grant(1)

    async def refused() -> bool:
        try:
            await a.write(sa, [Put(mesh("late"))], Fence("global", "a", 1))
        except NotLeader:
            return True
        await sa.delete("Mesh", "late")
        return False

    await eventually(refused, 10, "the expired lease to fence its holder's write")
    await a.close()


async def test_two_elections_on_one_database_run_the_work_once_and_hand_over(
        stores: tuple[PostgresStore, PostgresStore]) -> None:
    running: dict[str, bool] = {"a": False, "b": False}
    both: list[float] = []

    def work(name: str):  # type: ignore[no-untyped-def]
        async def run() -> None:
            running[name] = True
            if all(running.values()):
                both.append(asyncio.get_running_loop().time())
            try:
                await asyncio.Event().wait()
            finally:
                running[name] = False
        return run

    timing = Timing.for_ttl(1.0)
    ea = Election(stores[0].leases(), "global", work("a"), timing=timing, holder="a")
    eb = Election(stores[1].leases(), "global", work("b"), timing=timing, holder="b")
    tasks = {"a": asyncio.create_task(ea.run()), "b": asyncio.create_task(eb.run())}
    first = await eventually(lambda: next((n for n, r in running.items() if r), None), 10,
                             "a leader's work")
    other = "b" if first == "a" else "a"
    tasks[first].cancel()
    await asyncio.gather(tasks[first], return_exceptions=True)
    assert not running[first]
    await eventually(lambda: running[other], 10, "the other replica to take over")
    tasks[other].cancel()
    await asyncio.gather(tasks[other], return_exceptions=True)
    assert not both
