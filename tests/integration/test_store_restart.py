"""The SQL stores across restarts: of the store, of the process, of the Postgres server.

Data written before a close must come back after a reopen with its versions and times
intact; concurrent starts must migrate the schema once; an outage of the Postgres
server must surface as ``StoreUnavailable`` (never a raw asyncpg error) and the same
store — its pool and its LISTEN connection — must recover when the server returns.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from gossamer.errors import NotFound, StoreConfigError, StoreUnavailable
from gossamer.model.base import Resource
from gossamer.model.registry import parse_document
from gossamer.store import open_store
from gossamer.store.base import Event, EventType, ListQuery, Store
from gossamer.store.migrations import steps
from gossamer.store.postgres import migrate
from tests.pg import PostgresCluster

WAIT = 30.0


def timeout(name: str, idle: str = "5s") -> Resource:
    return parse_document({
        "type": "MeshTimeout", "name": name, "mesh": "default", "labels": {"team": "a"},
        "spec": {"targetRef": {"kind": "Mesh"},
                 "to": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": idle}}]},
    })


async def collect(events: AsyncIterator[Event], count: int) -> list[Event]:
    async def take() -> list[Event]:
        return [await anext(events) for _ in range(count)]

    return await asyncio.wait_for(take(), WAIT)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_db_url"))
    return f"sqlite://{tmp_path}/state/store.db"


async def _write_some(store: Store) -> list[Resource]:
    mesh = await store.create(parse_document({"type": "Mesh", "name": "default"}))
    await store.create(timeout("t1"))
    t1 = await store.update(timeout("t1", idle="2s"), expected_version=1)
    t1 = await store.update(timeout("t1", idle="3s"), expected_version=2)
    t2 = await store.create(timeout("t2"))
    await store.create(timeout("gone"))
    await store.delete("MeshTimeout", "gone", "default")
    return [mesh, t1, t2]


async def test_data_survives_close_and_reopen(store_url: str, tmp_path: Path) -> None:
    store = await open_store(store_url, tmp_path)
    written = await _write_some(store)
    revision = await store.revision()
    await store.close()

    store = await open_store(store_url, tmp_path)
    try:
        for res in written:
            again = await store.get(res.type, res.name, res.mesh)
            assert again == res  # spec, labels, version, both times, revision
        assert (await store.get("MeshTimeout", "t1", "default")).meta.version == 3
        assert await store.revision() == revision
        page = await store.list(ListQuery(kind="MeshTimeout"))
        assert [r.name for r in page.items] == ["t1", "t2"]
        later = await store.create(timeout("t3"))
        assert later.meta.revision == revision + 1
    finally:
        await store.close()


async def test_a_closed_store_refuses_work(store_url: str, tmp_path: Path) -> None:
    store = await open_store(store_url, tmp_path)
    await store.close()
    with pytest.raises(StoreUnavailable):
        await store.get("Mesh", "default")
    with pytest.raises(StoreUnavailable):
        await store.create(timeout("t1"))


def test_a_process_that_never_closes_its_sqlite_store_still_exits(tmp_path: Path) -> None:
    script = ("import asyncio, pathlib, sys\n"
              "from gossamer.store import open_store\n"
              "async def main():\n"
              "    sys.modules['__main__'].kept = await open_store('sqlite', "
              f"pathlib.Path({str(tmp_path)!r}))\n"
              "asyncio.run(main())\n")
    done = subprocess.run([sys.executable, "-c", script], timeout=60, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()


@pytest.mark.postgres
async def test_replicas_starting_together_migrate_once(postgres_db_url: str,
                                                       tmp_path: Path) -> None:
    stores = await asyncio.gather(*(open_store(postgres_db_url, tmp_path) for _ in range(4)))
    try:
        conn = await asyncpg.connect(postgres_db_url)
        try:
            rows = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
            assert [r["version"] for r in rows] == [s.version for s in steps()]
            assert await migrate(conn) == []  # idempotent
        finally:
            await conn.close()
        await stores[0].create(timeout("t1"))
        assert (await stores[3].get("MeshTimeout", "t1", "default")).meta.version == 1
    finally:
        for store in stores:
            await store.close()


@pytest.mark.postgres
async def test_open_says_why_postgres_cannot_be_used(postgres_cluster: PostgresCluster,
                                                     tmp_path: Path) -> None:
    with pytest.raises(StoreConfigError):
        await open_store(postgres_cluster.url("no_such_database"), tmp_path)
    with pytest.raises(StoreUnavailable):
        await open_store("postgresql://postgres@127.0.0.1:1/x", tmp_path)


@pytest.mark.postgres
async def test_the_store_rides_out_a_postgres_restart(postgres_cluster: PostgresCluster,
                                                      postgres_db_url: str,
                                                      tmp_path: Path) -> None:
    store = await open_store(postgres_db_url, tmp_path)
    try:
        before = await store.create(timeout("t1"))
        watching = asyncio.create_task(collect(store.watch(await store.revision()), 1))
        await asyncio.to_thread(postgres_cluster.stop)
        try:
            with pytest.raises(StoreUnavailable) as caught:
                await asyncio.wait_for(store.create(timeout("t2")), WAIT)
            assert caught.value.retryable
            with pytest.raises(StoreUnavailable):
                await asyncio.wait_for(store.get("MeshTimeout", "t1", "default"), WAIT)
            assert not watching.done()
        finally:
            await asyncio.to_thread(postgres_cluster.start)

        # The same store instance: its pool reconnects, nothing written was lost.
        assert await store.get("MeshTimeout", "t1", "default") == before
        with pytest.raises(NotFound):
            await store.get("MeshTimeout", "t2", "default")
        after = await store.update(timeout("t1", idle="9s"), expected_version=1)
        # The watcher from before the outage sees the write after it: its LISTEN
        # connection came back and it re-read from its last revision.
        (event,) = await watching
        assert (event.type, event.resource) == (EventType.UPDATED, after)
    finally:
        await store.close()
