"""The store contract (DESIGN §7), run against every backend: memory, SQLite, PostgreSQL.

Each backend is opened through ``open_store``. ``Backend.open()`` opens one more store
on the same storage — the same file or database, as a second process would — except for
memory, which has no storage beyond its one instance and hands that instance out again.
Waits on watches are bounded by ``asyncio.wait_for``; nothing sleeps.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from gossamer.errors import (
    AlreadyExists,
    Conflict,
    InvalidResource,
    NotFound,
    RevisionCompacted,
    StoreConfigError,
)
from gossamer.model.base import Resource
from gossamer.model.registry import parse_document, to_document
from gossamer.store import open_store
from gossamer.store.base import (
    Create,
    Delete,
    Event,
    EventType,
    ListQuery,
    Put,
    Store,
    Update,
    WriteOp,
)
from gossamer.store.sqlite import SqliteStore
from tests import builders

WAIT = 15.0  # seconds any one expected event may take


# -- resources ------------------------------------------------------------------------

def mesh(name: str, **labels: str) -> Resource:
    return parse_document({"type": "Mesh", "name": name, "labels": labels})


def timeout(name: str, mesh: str = "default", labels: dict[str, str] | None = None,
            idle: str = "5s") -> Resource:
    return parse_document({
        "type": "MeshTimeout", "name": name, "mesh": mesh, "labels": labels or {},
        "spec": {"targetRef": {"kind": "Mesh"},
                 "to": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": idle}}]},
    })


def dataplane(name: str, mesh: str = "default", address: str = "10.0.0.1") -> Resource:
    return builders.dataplane(name, "web", mesh=mesh, address=address, port=8080,
                              service_port=80, tags={"gossamer.io/protocol": "http"},
                              labels={"gossamer.io/zone": "zone-1"})


# -- backends -------------------------------------------------------------------------

@dataclass
class Backend:
    name: str
    url: str
    data_dir: Path
    opened: list[Store] = field(default_factory=list)

    async def open(self, **options: Any) -> Store:
        if self.name == "memory" and self.opened:
            return self.opened[0]
        store = await open_store(self.url, self.data_dir, **options)
        self.opened.append(store)
        return store

    async def close_all(self) -> None:
        for store in self.opened:
            await store.close()


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_db_url")
    elif request.param == "sqlite":
        url = f"sqlite://{tmp_path}/store.db"
    else:
        url = "memory"
    backend = Backend(request.param, url, tmp_path)
    yield backend
    await backend.close_all()


async def collect(events: AsyncIterator[Event], count: int) -> list[Event]:
    async def take() -> list[Event]:
        return [await anext(events) for _ in range(count)]

    return await asyncio.wait_for(take(), WAIT)


def content(res: Resource) -> dict[str, Any]:
    return to_document(res, with_meta=False)


# -- get, create, update, delete --------------------------------------------------------

async def test_create_then_get_round_trips_every_kind(backend: Backend) -> None:
    store = await backend.open()
    assert await store.revision() == 0
    originals = [mesh("default", team="core"), timeout("t1"), dataplane("dp-1")]
    for revision, res in enumerate(originals, start=1):
        stored = await store.create(res)
        assert stored.meta.version == 1
        assert stored.meta.revision == revision
        assert stored.meta.creation_time is not None
        assert stored.meta.creation_time == stored.meta.modification_time
        assert content(stored) == content(res)
        assert await store.get(res.type, res.name, res.mesh) == stored
    assert await store.revision() == 3


async def test_missing_resources_are_not_found(backend: Backend) -> None:
    store = await backend.open()
    await store.create(timeout("t1", mesh="m1"))
    with pytest.raises(NotFound):
        await store.get("MeshTimeout", "t1", "m2")
    with pytest.raises(NotFound):
        await store.get("Mesh", "t1")
    with pytest.raises(NotFound):
        await store.update(timeout("nope"), expected_version=1)
    with pytest.raises(NotFound):
        await store.delete("MeshTimeout", "nope", "default")
    assert await store.revision() == 1


async def test_create_refuses_an_existing_key_and_keeps_the_original(backend: Backend) -> None:
    store = await backend.open()
    first = await store.create(timeout("t1", idle="1s"))
    with pytest.raises(AlreadyExists):
        await store.create(timeout("t1", idle="9s"))
    assert await store.get("MeshTimeout", "t1", "default") == first
    assert await store.revision() == 1
    # The same name in another mesh, or of another kind, is another resource.
    await store.create(timeout("t1", mesh="other"))
    await store.create(mesh("t1"))


async def test_update_bumps_the_version_and_keeps_the_creation_time(backend: Backend) -> None:
    store = await backend.open()
    created = await store.create(timeout("t1", idle="1s"))
    changed = timeout("t1", idle="2s", labels={"team": "a"})
    updated = await store.update(changed, expected_version=1)
    assert updated.meta.version == 2
    assert updated.meta.revision == 2
    assert updated.meta.creation_time == created.meta.creation_time
    assert updated.meta.modification_time is not None
    assert created.meta.modification_time is not None
    assert updated.meta.modification_time >= created.meta.modification_time
    assert content(updated) == content(changed)
    assert await store.get("MeshTimeout", "t1", "default") == updated


async def test_a_stale_update_is_a_conflict_and_overwrites_nothing(backend: Backend) -> None:
    store = await backend.open()
    await store.create(timeout("t1", idle="1s"))
    winner = await store.update(timeout("t1", idle="2s"), expected_version=1)
    with pytest.raises(Conflict) as caught:
        await store.update(timeout("t1", idle="3s"), expected_version=1)
    assert caught.value.caller_fault
    assert await store.get("MeshTimeout", "t1", "default") == winner
    assert await store.revision() == 2


async def test_delete_checks_the_version_and_frees_the_name(backend: Backend) -> None:
    store = await backend.open()
    await store.create(dataplane("dp-1"))
    current = await store.update(dataplane("dp-1", address="10.0.0.2"), expected_version=1)
    with pytest.raises(Conflict):
        await store.delete("Dataplane", "dp-1", "default", expected_version=1)
    assert await store.get("Dataplane", "dp-1", "default") == current
    await store.delete("Dataplane", "dp-1", "default", expected_version=2)
    with pytest.raises(NotFound):
        await store.get("Dataplane", "dp-1", "default")
    again = await store.create(dataplane("dp-1"))
    assert again.meta.version == 1
    await store.delete("Dataplane", "dp-1", "default")  # no version: unconditional


async def test_concurrent_writers_lose_no_update(backend: Backend) -> None:
    """20 read-modify-write loops over two store instances (two processes, for SQL)."""
    stores = [await backend.open(), await backend.open()]
    await stores[0].create(timeout("shared"))
    conflicts = 0

    async def writer(i: int) -> None:
        nonlocal conflicts
        store = stores[i % 2]
        while True:
            current = await store.get("MeshTimeout", "shared", "default")
            await asyncio.sleep(0)  # let the others read the same version
            labels = {**current.labels, f"writer-{i}": "done"}
            try:
                await store.update(replace(current, labels=labels), current.meta.version)
                return
            except Conflict:
                conflicts += 1

    await asyncio.wait_for(asyncio.gather(*(writer(i) for i in range(20))), 120)
    final = await stores[1].get("MeshTimeout", "shared", "default")
    assert final.meta.version == 1 + 20
    assert dict(final.labels) == {f"writer-{i}": "done" for i in range(20)}
    assert conflicts > 0, "the writers never raced: the test proved nothing"
    # Every write has its own revision, without gaps, in the order of the versions.
    events = await collect(stores[0].watch(0), 21)
    assert [e.revision for e in events] == list(range(1, 22))
    assert [e.resource.meta.version for e in events] == list(range(1, 22))


# -- list -----------------------------------------------------------------------------

# Names whose byte order differs from a natural-language collation ('-' < '.' < '0').
def _name(i: int) -> str:
    return f"mt{'-.'[i % 2] if i % 3 else ''}{i:03d}"


def _labels(i: int) -> dict[str, str]:
    return {"team": "a" if i % 3 == 0 else "b", "gossamer.io/zone": f"zone-{i % 2}"}


async def _fill(store: Store) -> list[Resource]:
    await store.create(mesh("m1"))
    await store.create(mesh("m2"))
    await store.create(dataplane("dp-1", mesh="m1"))
    return [await store.create(timeout(_name(i), mesh="m1" if i < 160 else "m2",
                                       labels=_labels(i)))
            for i in range(250)]


async def _page_through(store: Store, **query: Any) -> list[Resource]:
    items: list[Resource] = []
    token: str | None = None
    totals: set[int] = set()
    pages = 0
    while True:
        page = await store.list(ListQuery(kind="MeshTimeout", limit=100, page_token=token,
                                          **query))
        items += page.items
        totals.add(page.total)
        pages += 1
        assert len(page.items) <= 100
        if page.next_token is None:
            break
        assert len(page.items) == 100
        token = page.next_token
    assert totals == {len(items)}
    assert pages == max(1, math.ceil(len(items) / 100))
    return items


@pytest.mark.parametrize("query", [
    {},
    {"labels": {"team": "a"}},
    {"labels": {"team": "b", "gossamer.io/zone": "zone-1"}},
    {"mesh": "m1"},
    {"mesh": "m2", "labels": {"gossamer.io/zone": "zone-0"}},
    {"mesh": "m3"},
    {"labels": {"team": "nobody"}},
], ids=["all", "selector", "two-labels", "mesh", "mesh+selector", "empty-mesh", "no-match"])
async def test_paging_returns_each_match_once_in_order(backend: Backend,
                                                       query: dict[str, Any]) -> None:
    store = await backend.open()
    created = await _fill(store)
    selector = query.get("labels") or {}
    expected = sorted(
        (r.mesh, r.name) for r in created
        if query.get("mesh") in (None, r.mesh)
        and all(r.labels.get(k) == v for k, v in selector.items()))
    listed = await _page_through(store, **query)
    assert [(r.mesh, r.name) for r in listed] == expected
    by_key = {(r.mesh, r.name): r for r in created}
    assert all(r == by_key[(r.mesh, r.name)] for r in listed)


async def test_a_page_token_survives_deletes_between_pages(backend: Backend) -> None:
    store = await backend.open()
    await _fill(store)
    first = await store.list(ListQuery(kind="MeshTimeout", limit=100))
    last = first.items[-1]
    await store.delete(last.type, last.name, last.mesh)
    second = await store.list(ListQuery(kind="MeshTimeout", limit=100,
                                        page_token=first.next_token))
    assert second.total == 249
    keys = [(r.mesh, r.name) for r in first.items[:-1] + second.items]
    everything = await store.list(ListQuery(kind="MeshTimeout"))
    assert keys == [(r.mesh, r.name) for r in everything.items[:199]]


async def test_list_refuses_a_bad_page_size_or_token(backend: Backend) -> None:
    store = await backend.open()
    with pytest.raises(InvalidResource):
        await store.list(ListQuery(kind="MeshTimeout", limit=0))
    with pytest.raises(InvalidResource):
        await store.list(ListQuery(kind="MeshTimeout", limit=10, page_token="%%not-a-token"))


# -- watch ----------------------------------------------------------------------------

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


# -- batch writes ---------------------------------------------------------------------

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


# -- open_store -----------------------------------------------------------------------

@pytest.mark.parametrize("url", ["", "mysql://db", "sqlite://host/x.db", "sqlite:relative.db",
                                 "sqlite:///tmp/dir/", "postgres://", "file:///x"])
async def test_open_store_refuses_a_bad_url(url: str, tmp_path: Path) -> None:
    with pytest.raises(StoreConfigError):
        await open_store(url, tmp_path)


async def test_open_store_sqlite_makes_its_file_in_the_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "a" / "b"
    store = await open_store("sqlite", data_dir)
    try:
        await store.create(mesh("default"))
    finally:
        await store.close()
    assert (data_dir / "store.db").is_file()


async def test_the_sqlite_store_and_its_journal_are_private(tmp_path: Path) -> None:
    """The file holds GlobalSecrets (root CA and token signing keys): 0600, also when an
    older version left it readable by others."""
    old = tmp_path / "old.db"
    old.touch(mode=0o644)
    old.chmod(0o644)
    for path in (tmp_path / "store.db", old):
        store = await SqliteStore.open(path)
        try:
            await store.create(mesh("default"))
            modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.glob(path.name + "*")}
        finally:
            await store.close()
        assert modes and set(modes.values()) == {0o600}, modes
