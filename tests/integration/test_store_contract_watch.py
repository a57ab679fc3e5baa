"""The store contract (DESIGN §7), run against every backend: watches (replay from zero,
following, resuming after a reopen, compaction, writes through another instance) and
batches (every op written and seen in order, all or nothing) (harness in
``tests/integration/store_backends.py``).
"""

from __future__ import annotations

import asyncio

import pytest

from gossamer.errors import AlreadyExists, Conflict, NotFound, RevisionCompacted
from gossamer.model.base import Resource
from gossamer.store.base import Create, Delete, EventType, ListQuery, Put, Store, Update, WriteOp
from tests.integration.store_backends import Backend, collect, mesh, timeout


async def test_watch_from_zero_replays_every_write_in_order(backend: Backend) -> None:
    store = await backend.open()
    created = await store.create(timeout("t1"))
    updated = await store.update(timeout("t1", idle="7s"), expected_version=1)
    await store.delete("MeshTimeout", "t1", "default")
    events = await collect(store.watch(0), 3)
    assert [(e.revision, e.type) for e in events] == [
        (1, EventType.CREATED), (2, EventType.UPDATED), (3, EventType.DELETED)]
    assert events[0].resource == created
    assert events[1].resource == updated
    assert events[2].resource == updated  # a delete carries the resource as last stored


async def test_watch_follows_writes_made_after_it_started(backend: Backend) -> None:
    store = await backend.open()
    await store.create(mesh("default"))
    watching = asyncio.create_task(collect(store.watch(await store.revision()), 3))
    await store.create(timeout("t1"))
    await store.update(timeout("t1", idle="1s"), expected_version=1)
    await store.delete("MeshTimeout", "t1", "default", expected_version=2)
    events = await watching
    assert [(e.revision, e.type, e.resource.name) for e in events] == [
        (2, EventType.CREATED, "t1"), (3, EventType.UPDATED, "t1"), (4, EventType.DELETED, "t1")]


async def test_watch_resumes_after_a_reopen_with_only_later_events(backend: Backend) -> None:
    first = await backend.open()
    await first.create(mesh("default"))
    await first.create(timeout("t1"))
    resume_at = await first.revision()
    await first.close()
    second = await backend.open()
    assert await second.revision() == resume_at
    await second.create(timeout("t2"))
    await second.update(timeout("t2", idle="3s"), expected_version=1)
    events = await collect(second.watch(resume_at), 2)
    assert [(e.revision, e.type, e.resource.name) for e in events] == [
        (resume_at + 1, EventType.CREATED, "t2"), (resume_at + 2, EventType.UPDATED, "t2")]


async def test_resuming_before_the_retained_events_is_revision_compacted(
        backend: Backend) -> None:
    store = await backend.open(retention=5)
    for i in range(10):
        await store.create(timeout(f"t{i}"))
    for since in (0, 4):
        with pytest.raises(RevisionCompacted):
            await collect(store.watch(since), 1)
    events = await collect(store.watch(5), 5)
    assert [e.revision for e in events] == [6, 7, 8, 9, 10]
    assert [e.resource.name for e in events] == [f"t{i}" for i in range(5, 10)]


async def test_a_watcher_sees_writes_made_through_another_instance(backend: Backend) -> None:
    """Postgres: LISTEN/NOTIFY. SQLite: only with ``cross_process_watch`` (a bounded poll).

    Without the flag a SQLite watcher is woken only by writes through its own store
    instance; see ``gossamer/store/sqlite.py``.
    """
    options = {"cross_process_watch": True} if backend.name == "sqlite" else {}
    watcher = await backend.open(**options)
    writer = await backend.open()
    events = watcher.watch(await watcher.revision())
    for round_ in range(3):  # the first may be a replay; later ones must be wake-ups
        name = f"t{round_}"
        pending = asyncio.create_task(collect(events, 1))
        await writer.create(timeout(name))
        (event,) = await pending
        assert (event.type, event.resource.name) == (EventType.CREATED, name)
        assert event.revision == await writer.revision()


async def _seed(store: Store) -> dict[str, Resource]:
    """A mesh, a policy at version 2 and one to delete."""
    await store.create(mesh("default"))
    await store.create(timeout("t0", idle="1s"))
    return {"t0": await store.update(timeout("t0", idle="2s"), expected_version=1),
            "gone": await store.create(timeout("gone"))}


async def test_a_batch_writes_every_op_and_watchers_see_each_in_order(
        backend: Backend) -> None:
    options = {"cross_process_watch": True} if backend.name == "sqlite" else {}
    store, other = await backend.open(), await backend.open(**options)
    seeded = await _seed(store)
    start = await store.revision()
    watchers = [asyncio.create_task(collect(s.watch(start), 4)) for s in (store, other)]
    results = await store.write([
        Create(timeout("t1")),
        Update(timeout("t0", idle="3s"), expected_version=2),
        Put(timeout("t2")),
        Delete("MeshTimeout", "gone", "default", expected_version=1),
        Delete("MeshTimeout", "never", "default", missing_ok=True),
        Put(mesh("default")),  # the content stored already: no event
    ])
    assert await store.revision() == start + 4
    t1, t0, t2, gone, never, unchanged = results
    assert t1 is not None and t2 is not None and t0 is not None
    assert [t1.meta.revision, t0.meta.revision, t2.meta.revision] == [
        start + 1, start + 2, start + 3]
    assert (t1.meta.version, t0.meta.version, t2.meta.version) == (1, 3, 1)
    assert t0.meta.creation_time == seeded["t0"].meta.creation_time
    assert gone == seeded["gone"] and never is None
    assert unchanged == await store.get("Mesh", "default")
    assert unchanged.meta.version == 1
    for events in await asyncio.gather(*watchers):
        assert [(e.revision, e.type, e.resource.name) for e in events] == [
            (start + 1, EventType.CREATED, "t1"), (start + 2, EventType.UPDATED, "t0"),
            (start + 3, EventType.CREATED, "t2"), (start + 4, EventType.DELETED, "gone")]
        assert events[1].resource == t0 == await store.get("MeshTimeout", "t0", "default")


FAILING_OPS = {
    "create-existing": (Create(timeout("t0")), AlreadyExists),
    "stale-update": (Update(timeout("t0", idle="9s"), expected_version=1), Conflict),
    "update-missing": (Update(timeout("nope"), expected_version=1), NotFound),
    "stale-delete": (Delete("MeshTimeout", "t0", "default", expected_version=1), Conflict),
    "delete-missing": (Delete("MeshTimeout", "nope", "default"), NotFound),
}


@pytest.mark.parametrize("failing", FAILING_OPS.values(), ids=FAILING_OPS.keys())
async def test_a_refused_op_in_the_middle_of_a_batch_writes_nothing(
        backend: Backend, failing: tuple[WriteOp, type[Exception]]) -> None:
    store = await backend.open()
    seeded = await _seed(store)
    start = await store.revision()
    watching = asyncio.create_task(collect(store.watch(start), 1))
    op, error = failing
    with pytest.raises(error):
        await store.write([Create(timeout("new-1")), Put(timeout("gone", idle="8s")),
                           Delete("MeshTimeout", "gone", "default"), op,
                           Create(timeout("new-2"))])
    assert await store.revision() == start
    for name in ("new-1", "new-2"):
        with pytest.raises(NotFound):
            await store.get("MeshTimeout", name, "default")
    assert await store.get("MeshTimeout", "t0", "default") == seeded["t0"]
    assert await store.get("MeshTimeout", "gone", "default") == seeded["gone"]
    # The batch made no event: the first one a watcher sees is the next write's.
    await store.create(timeout("after"))
    (event,) = await watching
    assert (event.revision, event.resource.name) == (start + 1, "after")


async def test_ops_of_one_batch_see_the_earlier_ones(backend: Backend) -> None:
    store = await backend.open()
    await store.create(mesh("default"))
    created, updated, deleted, again = await store.write([
        Create(timeout("t1")), Update(timeout("t1", idle="4s"), expected_version=1),
        Delete("MeshTimeout", "t1", "default", expected_version=2), Create(timeout("t1"))])
    assert created is not None and updated is not None and again is not None
    assert (created.meta.version, updated.meta.version, again.meta.version) == (1, 2, 1)
    assert deleted == updated
    assert await store.get("MeshTimeout", "t1", "default") == again
    assert await store.write([]) == []
    assert await store.revision() == 5


async def test_put_changes_only_what_differs(backend: Backend) -> None:
    store = await backend.open()
    await store.create(mesh("default"))
    first = await store.create(timeout("t1", labels={"a": "1"}))
    (same,) = await store.write([Put(timeout("t1", labels={"a": "1"}))])
    assert same == first and await store.revision() == 2
    (relabelled,) = await store.write([Put(timeout("t1", labels={"a": "2"}))])
    assert relabelled is not None
    assert (relabelled.meta.version, relabelled.meta.revision) == (2, 3)
    assert relabelled.meta.creation_time == first.meta.creation_time
    (respecced,) = await store.write([Put(timeout("t1", labels={"a": "2"}, idle="6s"))])
    assert respecced is not None and respecced.meta.version == 3
    assert await store.get("MeshTimeout", "t1", "default") == respecced


async def test_single_writes_do_not_land_inside_a_refused_batch(backend: Backend) -> None:
    """A batch that fails after many ops, with single writes racing it on one store."""
    store = await backend.open()
    await store.create(mesh("default"))
    await store.create(timeout("taken"))
    batch = [Create(timeout(f"batch-{i}")) for i in range(200)] + [Create(timeout("taken"))]

    async def single(i: int) -> None:
        await asyncio.sleep(0)
        await store.create(timeout(f"single-{i}"))

    outcomes = await asyncio.gather(store.write(batch), *(single(i) for i in range(20)),
                                    return_exceptions=True)
    assert isinstance(outcomes[0], AlreadyExists)
    assert outcomes[1:] == [None] * 20
    names = {r.name for r in (await store.list(ListQuery("MeshTimeout"))).items}
    assert names == {"taken"} | {f"single-{i}" for i in range(20)}
    events = await collect(store.watch(0), 22)
    assert [e.revision for e in events] == list(range(1, 23))

