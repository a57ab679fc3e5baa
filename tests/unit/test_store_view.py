"""The store's view (``gossamer.store.view``): it holds what the store holds, at its revision.

- For random sequences of writes and batches (Hypothesis), once the view has reached the
  store's revision it equals the store, kind by kind, and so does a follower's table;
  the follower's resources are the view's own objects, not copies.
- A view that fell behind the store's retention relists, and its followers start again
  from the relisted view.
- ``read`` sees a write that returned before it began (read-your-writes), waits only
  boundedly, goes to the store for a kind it does not keep, and answers from the view
  with the reason and the time it began while the store does not answer; nothing cached
  is a ``StoreUnavailable``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gossamer.errors import StoreUnavailable
from gossamer.model.base import Resource
from gossamer.model.registry import parse_document
from gossamer.store.base import Delete, ListQuery, Put, Store, WriteOp
from gossamer.store.memory import MemoryStore
from gossamer.store.sqlite import SqliteStore
from gossamer.store.view import Stale, StoreView

WAIT = 10.0
KINDS = ("Mesh", "MeshTimeout", "MeshRetry")


def mesh(name: str) -> Resource:
    return parse_document({"type": "Mesh", "name": name})


def policy(kind: str, name: str, mesh_name: str, seconds: int) -> Resource:
    conf = (
        {"idleTimeout": f"{seconds}s"}
        if kind == "MeshTimeout"
        else {"tcp": {"maxConnectAttempt": seconds}}
    )
    return parse_document(
        {
            "type": kind,
            "name": name,
            "mesh": mesh_name,
            "labels": {"team": "odd" if seconds % 2 else "even"},
            "spec": {
                "targetRef": {"kind": "Mesh"},
                "to": [{"targetRef": {"kind": "Mesh"}, "default": conf}],
            },
        }
    )


async def store_contents(
    store: Store, kinds: tuple[str, ...] = KINDS
) -> dict[tuple[str, str, str], tuple[int, Any]]:
    out = {}
    for kind in kinds:
        for r in (await store.list(ListQuery(kind))).items:
            out[r.key] = (r.meta.version, r.spec)
    return out


def table(
    resources: dict[tuple[str, str, str], Resource],
) -> dict[tuple[str, str, str], tuple[int, Any]]:
    return {k: (r.meta.version, r.spec) for k, r in resources.items()}


class Follower:
    """A consumer keeping its own table, as ``MeshState`` does."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str, str], Resource] = {}
        self.resets = 0

    def reset(self, resources: list[Resource]) -> None:
        self.items = {r.key: r for r in resources}
        self.resets += 1

    def changed(self, res: Resource, deleted: bool) -> None:
        if deleted:
            self.items.pop(res.key, None)
        else:
            self.items[res.key] = res


@contextlib.asynccontextmanager
async def running(view: StoreView, follower: Follower | None = None) -> AsyncIterator[StoreView]:
    tasks = [asyncio.create_task(view.run())]
    if follower is not None:
        tasks.append(asyncio.create_task(view.follow(KINDS, follower.reset, follower.changed)))
    try:
        await asyncio.wait_for(view.loaded.wait(), WAIT)
        yield view
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def settled(view: StoreView, follower: Follower | None = None) -> None:
    """Until the view has the store's revision and the follower has drained its queue."""
    assert await view.caught_up(await view.store.revision(), WAIT)
    if follower is not None:
        for _ in range(1000):
            if table(follower.items) == table({r.key: r for r in view.resources(KINDS)}):
                return
            await asyncio.sleep(0)


# -- random writes: the view equals the store --------------------------------------------

names = st.sampled_from(["a", "b", "c", "d", "e"])
meshes = st.sampled_from(["m1", "m2"])
op = st.one_of(
    st.tuples(
        st.just("put"),
        st.sampled_from(["MeshTimeout", "MeshRetry"]),
        names,
        meshes,
        st.integers(1, 3),
    ),
    st.tuples(
        st.just("delete"), st.sampled_from(["MeshTimeout", "MeshRetry"]), names, meshes, st.just(0)
    ),
    st.tuples(st.just("delete-mesh"), st.just("Mesh"), meshes, st.just(""), st.just(0)),
)
batches = st.lists(st.lists(op, min_size=1, max_size=5), min_size=1, max_size=12)


def to_op(kind_of_op: str, kind: str, name: str, mesh_name: str, seconds: int) -> WriteOp:
    if kind_of_op == "put":
        return Put(policy(kind, name, mesh_name, seconds))
    if kind_of_op == "delete":
        return Delete(kind, name, mesh_name, missing_ok=True)
    return Delete("Mesh", name, missing_ok=True)


async def check_random_writes(
    store: Store, plan: list[list[tuple[str, str, str, str, int]]], settle_each: bool
) -> None:
    await store.write([Put(mesh("m1")), Put(mesh("m2"))])
    view, follower = StoreView(store), Follower()
    async with running(view, follower):
        for batch in plan:
            await store.write([to_op(*o) for o in batch])
            await store.write([Put(mesh("m1")), Put(mesh("m2"))])  # a mesh deleted comes back
            if settle_each:
                await settled(view, follower)
                everything = {r.key: r for r in view.resources(view.kinds)}
                assert table(everything) == await store_contents(store, tuple(view.kinds))
                await same_pages(view, store)  # the kinds' orders kept by each change
        await settled(view, follower)
        assert view.revision == await store.revision()
        await same_pages(view, store)
        expected = await store_contents(store)
        assert table({r.key: r for r in view.resources(KINDS)}) == expected
        assert table(follower.items) == expected
        for key, res in follower.items.items():
            assert view.held(key[0], key[2], key[1]) is res  # shared, not copied


async def same_pages(view: StoreView, store: Store) -> None:
    """Every list the API can ask, paged to its end, is the store's, page by page."""
    for kind in KINDS:
        for mesh_name in (None, "m1", "m2", "m3"):
            for labels in (None, {"team": "odd"}, {"team": "even", "x": "y"}):
                for limit in (1, 2, 100):
                    token: str | None = None
                    for _ in range(100):  # more pages than any list here has
                        query = ListQuery(kind, mesh_name, labels, limit, token)
                        mine, theirs = view.page(query), await store.list(query)
                        assert [r.key for r in mine.items] == [r.key for r in theirs.items]
                        assert (mine.total, mine.next_token) == (
                            theirs.total,
                            theirs.next_token,
                        ), query
                        token = mine.next_token
                        if token is None:
                            break
                    else:
                        raise AssertionError(f"the pages of {query} never end")


@settings(max_examples=60, deadline=None)
@given(plan=batches, settle_each=st.booleans())
def test_the_view_equals_the_memory_store_after_random_writes(
    plan: list[list[tuple[str, str, str, str, int]]], settle_each: bool
) -> None:
    asyncio.run(check_random_writes(MemoryStore(), plan, settle_each))


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(plan=batches, settle_each=st.booleans())
def test_the_view_equals_the_sqlite_store_after_random_writes(
    tmp_path: Path, plan: list[list[tuple[str, str, str, str, int]]], settle_each: bool
) -> None:
    async def check() -> None:
        path = tmp_path / f"store-{datetime.now(UTC).timestamp()}.db"
        store = await SqliteStore.open(path)
        try:
            await check_random_writes(store, plan, settle_each)
        finally:
            await store.close()

    asyncio.run(check())


async def test_a_view_behind_the_retention_relists_and_its_followers_start_again() -> None:
    store = MemoryStore(retention=5)
    await store.write([Put(mesh("m1"))])
    view, follower = StoreView(store), Follower()
    async with running(view, follower):
        await settled(view, follower)
        resets = follower.resets
        # No turn of the loop between these writes: the view's watch is left behind.
        for i in range(20):
            await store.write([Put(policy("MeshTimeout", f"p{i}", "m1", 1 + i % 3))])
        await settled(view, follower)
        expected = await store_contents(store)
        assert table({r.key: r for r in view.resources(KINDS)}) == expected
        assert table(follower.items) == expected
        assert follower.resets > resets  # it was relisted, not replayed


# -- reads ---------------------------------------------------------------------------------


class Failing:
    """A memory store whose revision and reads can be made to fail, as a database that
    stopped answering does (its watch then simply waits, as the Postgres one retries)."""

    def __init__(self) -> None:
        self.inner = MemoryStore()
        self.down: str | None = None
        self.slow = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def revision(self) -> int:
        if self.slow:
            await asyncio.sleep(60)
        if self.down:
            raise StoreUnavailable(self.down)
        return await self.inner.revision()

    async def get(self, kind: str, name: str, mesh: str = "") -> Resource:
        if self.down:
            raise StoreUnavailable(self.down)
        return await self.inner.get(kind, name, mesh)


async def test_a_read_sees_a_write_that_returned_before_it() -> None:
    store = MemoryStore()
    await store.write([Put(mesh("m1"))])
    view = StoreView(store)
    async with running(view):
        for i in range(1, 30):
            await store.write(
                [
                    Put(policy("MeshTimeout", "p", "m1", i % 3 + 1)),
                    Put(policy("MeshRetry", f"r{i}", "m1", 1)),
                ]
            )
            read = await view.read("MeshRetry", f"r{i}", "m1")
            assert read.resource is not None and read.stale is None
            assert read.resource.meta.revision == await store.revision()
            await store.write([Delete("MeshRetry", f"r{i}", "m1")])
            assert (await view.read("MeshRetry", f"r{i}", "m1")).resource is None


async def test_a_kind_the_view_does_not_keep_is_read_from_the_store() -> None:
    store = MemoryStore()
    await store.write([Put(mesh("m1"))])
    view = StoreView(store, kinds=["MeshTimeout"])
    async with running(view):
        read = await view.read("Mesh", "m1")
        assert read.resource is not None and read.resource.name == "m1"
        assert "Mesh" not in view.kinds


async def test_reads_while_the_store_does_not_answer_are_stale_then_fresh_again() -> None:
    store = Failing()
    await store.inner.write([Put(mesh("m1"))])
    clock = iter(datetime(2026, 1, 1, 12, 0, s, tzinfo=UTC) for s in range(60))
    view = StoreView(store, clock=lambda: next(clock))  # type: ignore[arg-type]
    async with running(view):
        store.down = "postgres is unavailable: connection refused"
        first = await view.read("Mesh", "m1")
        assert first.resource is not None and first.resource.name == "m1"
        assert first.stale is not None
        assert first.stale.header() == (
            "postgres is unavailable: connection refused; since 2026-01-01T12:00:00Z"
        )
        again = await view.read("Mesh", "m1")
        missing = await view.read("Mesh", "nope")
        assert again.stale == first.stale  # since the outage began, not since this read
        assert missing.resource is None and missing.stale == first.stale
        store.down = None
        fresh = await view.read("Mesh", "m1")
        assert fresh.resource is not None and fresh.stale is None
        store.down = "postgres is unavailable: connection refused"
        later = await view.read("Mesh", "m1")
        assert later.stale is not None and later.stale.since > first.stale.since


async def test_a_store_that_gives_no_revision_in_time_makes_the_read_stale() -> None:
    store = Failing()
    await store.inner.write([Put(mesh("m1"))])
    view = StoreView(store)
    async with running(view):
        store.slow = True
        read = await asyncio.wait_for(view.read("Mesh", "m1"), 2.0)
        assert read.resource is not None and read.stale is not None
        assert "no revision within" in read.stale.reason


async def test_nothing_cached_and_no_store_is_unavailable() -> None:
    store = Failing()
    store.down = "postgres is unavailable: connection refused"
    view = StoreView(store)  # never loaded: its listing fails too
    with pytest.raises(StoreUnavailable, match="nothing is cached"):
        await view.read("Mesh", "m1")
    with pytest.raises(StoreUnavailable):  # a kind it does not keep: the store's error
        await view.read("TokenRevocation", "x")


async def test_a_view_that_cannot_catch_up_in_time_sends_the_read_to_the_store() -> None:
    store = MemoryStore()
    await store.write([Put(mesh("m1"))])
    view = StoreView(store, catch_up=0.05)  # not running: it never reaches the revision
    read = await view.read("Mesh", "m1")
    assert read.resource is not None and read.stale is None


async def test_a_sole_writer_waits_only_for_what_it_wrote() -> None:
    store = MemoryStore()
    await store.write([Put(mesh("m1")), Put(policy("MeshRetry", "other", "m1", 1))])
    view = StoreView(store, shared=False, catch_up=5.0)
    async with running(view):
        for i in range(1, 20):
            written = policy("MeshTimeout", "p", "m1", i % 3 + 1)
            await store.write([Put(written)])
            await view.wrote([written.key])
            read = await view.read("MeshTimeout", "p", "m1")
            assert read.resource is not None and read.stale is None
            assert read.resource.meta.revision == await store.revision()
        await store.write([Delete("MeshTimeout", "p", "m1")])
        await view.wrote([("MeshTimeout", "m1", "p")])
        assert (await view.read("MeshTimeout", "p", "m1")).resource is None
        assert not view._pending and not view._written  # forgotten once reached


async def test_a_sole_writer_reads_what_it_did_not_write_without_waiting() -> None:
    store = MemoryStore()
    await store.write([Put(mesh("m1")), Put(policy("MeshRetry", "other", "m1", 1))])
    view = StoreView(store, shared=False, catch_up=0.2)
    async with running(view):
        pass  # loaded, then stopped: it never follows another write
    written = policy("MeshTimeout", "p", "m1", 2)
    await store.write([Put(written)])
    await view.wrote([written.key])
    untouched = await asyncio.wait_for(view.read("MeshRetry", "other", "m1"), 0.1)
    assert untouched.resource is not None  # from the view, at once
    mine = await view.read("MeshTimeout", "p", "m1")  # the view is behind: the store
    assert view.held("MeshTimeout", "p", "m1") is None
    assert mine.resource is not None and mine.resource.spec == written.spec


def test_a_stale_header_is_one_line_of_ascii() -> None:
    stale = Stale("la base ne répond pas:\n  connexion refusée", datetime(2026, 1, 1, tzinfo=UTC))
    assert stale.header() == "la base ne r?pond pas: connexion refus?e; since 2026-01-01T00:00:00Z"
