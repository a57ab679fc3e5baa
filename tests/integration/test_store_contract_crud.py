"""The store contract (DESIGN §7), run against every backend: create, get, update and delete
with optimistic concurrency, concurrent writers, and paged lists (harness in
``tests/integration/store_backends.py``).
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import replace
from typing import Any

import pytest
import yaml

from gossamer.errors import AlreadyExists, Conflict, InvalidResource, NotFound
from gossamer.model.base import Resource
from gossamer.model.registry import REGISTRY, parse_document, to_document
from gossamer.store.base import ListQuery, Store
from tests import builders
from tests.integration.cli_every_kind import EVERY_KIND
from tests.integration.store_backends import Backend, collect, mesh, timeout


def dataplane(name: str, mesh: str = "default", address: str = "10.0.0.1") -> Resource:
    return builders.dataplane(name, "web", mesh=mesh, address=address, port=8080,
                              service_port=80, tags={"gossamer.io/protocol": "http"},
                              labels={"gossamer.io/zone": "zone-1"})


def content(res: Resource) -> dict[str, Any]:
    return to_document(res, with_meta=False)


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


async def test_a_document_of_every_kind_round_trips_and_is_replaced_and_deleted(
        backend: Backend) -> None:
    """Every kind the registry knows, the newest ones included (ZoneEgress,
    MeshExternalService, MeshPassthrough, ...): stored and read back equal, updated with
    its version, deleted."""
    store = await backend.open()
    docs = [parse_document(d) for d in yaml.safe_load_all(EVERY_KIND)]
    stored_kinds = {d.type for d in docs}
    user_kinds = {d.name for d in REGISTRY if not d.system}
    assert user_kinds - stored_kinds == set(), "a kind without a document here"
    for res in docs:
        stored = await store.create(res)
        assert content(stored) == content(res), res.type
        assert await store.get(res.type, res.name, res.mesh) == stored
        changed = replace(stored, labels={**stored.labels, "round": "two"})
        updated = await store.update(changed, expected_version=1)
        assert updated.meta.version == 2 and updated.labels["round"] == "two"
        assert content(await store.get(res.type, res.name, res.mesh)) == content(changed)
    for res in reversed(docs):
        await store.delete(res.type, res.name, res.mesh, expected_version=2)
        with pytest.raises(NotFound):
            await store.get(res.type, res.name, res.mesh)


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

