"""Writes through the global's HTTP API are all or nothing, on SQLite and PostgreSQL.

A batch apply with one document the store refuses stores none of the batch; a Mesh delete
that is refused (a stale version, Dataplanes left) deletes none of the mesh's policies and
Secrets; an accepted one removes the mesh and its contents in one transaction.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from global_cp.app import GlobalControlPlane
from gossamer.settings import GlobalSettings
from gossamer.store.base import Event, EventType, ListQuery

KINDS = ("meshtimeouts", "meshtrafficpermissions", "secrets")


def timeout(name: str, seconds: int = 5, mesh: str = "default") -> dict[str, Any]:
    return {"type": "MeshTimeout", "name": name, "mesh": mesh,
            "spec": {"targetRef": {"kind": "Mesh"},
                     "to": [{"targetRef": {"kind": "MeshService", "name": "backend"},
                             "default": {"http": {"requestTimeout": f"{seconds}s"}}}]}}


@pytest.fixture(params=["sqlite", "postgres"])
async def cp(request: pytest.FixtureRequest, tmp_path: Path
             ) -> AsyncIterator[GlobalControlPlane]:
    store = (str(request.getfixturevalue("postgres_db_url"))
             if request.param == "postgres" else "sqlite")
    plane = GlobalControlPlane(GlobalSettings(data_dir=tmp_path / "global",
                                              api_addr="127.0.0.1:0",
                                              sync_addr="127.0.0.1:0", store=store))
    await plane.start()
    yield plane
    await plane.stop()


def client(cp: GlobalControlPlane) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=cp.api_url, timeout=30,
                             headers={"Authorization": f"Bearer {cp.admin_token}"})


async def contents(c: httpx.AsyncClient, mesh: str) -> dict[str, list[dict[str, Any]]]:
    """Every policy and Secret of ``mesh``, as the API shows them (with versions)."""
    found = {}
    for kind in KINDS:
        r = await c.get(f"/meshes/{mesh}/{kind}", params={"size": 1000})
        assert r.status_code == 200, r.text
        found[kind] = r.json()["items"]
    return found


async def test_apply_with_a_refused_document_in_the_middle_stores_nothing(
        cp: GlobalControlPlane) -> None:
    async with client(cp) as c:
        assert (await c.put("/meshes/default/meshtimeouts/held",
                            json=timeout("held", 1))).status_code == 201
        assert (await c.put("/meshes/default/meshtimeouts/held",
                            json=timeout("held", 2))).status_code == 200
        before = await contents(c, "default")
        revision = await cp.store.revision()  # type: ignore[union-attr]
        # Valid documents all: the stale version is found only when it is written.
        cases = {409: {**timeout("held", 3), "version": 1},
                 404: {**timeout("missing", 3), "version": 4}}
        for status, refused in cases.items():
            docs = [timeout("first"), {"type": "Mesh", "name": "added"}, refused,
                    timeout("last", mesh="added")]
            r = await c.post("/_apply", json={"documents": docs})
            assert r.status_code == status, r.text
            assert r.json()["status"] == status and r.json()["detail"]
            assert await contents(c, "default") == before
            assert (await c.get("/meshes/added")).status_code == 404
        assert await written_since(cp, revision) == []


async def events_since(cp: GlobalControlPlane, revision: int) -> list[Event]:
    """Every store event after ``revision``. The global's own controllers may write
    meanwhile (the mesh CA its secret, the token authority a signing key), so tests
    look for their own resources among them rather than for no event at all."""
    store = cp.store
    assert store is not None
    now = await store.revision()
    found: list[Event] = []
    if now == revision:
        return found
    async for event in store.watch(revision):
        found.append(event)
        if event.revision >= now:
            break
    return found


async def written_since(cp: GlobalControlPlane, revision: int) -> list[tuple[str, str, str]]:
    """The keys of the refused batches' documents written after ``revision``."""
    return [e.resource.key for e in await events_since(cp, revision)
            if e.resource.name in ("first", "added", "held", "missing", "last")]


async def test_apply_writes_a_batch_as_one_run_of_events_meshes_first(
        cp: GlobalControlPlane) -> None:
    store = cp.store
    assert store is not None
    start = await store.revision()
    docs = [timeout("t1", mesh="added"), {"type": "Mesh", "name": "added"}, timeout("t2")]
    async with client(cp) as c:
        r = await c.post("/_apply", json={"documents": docs})
        assert r.status_code == 200, r.text
        assert [a["action"] for a in r.json()["results"]] == ["created"] * 3
    events = []
    async for event in store.watch(start):  # the CA controller writes meanwhile too
        if event.resource.name in ("added", "t1", "t2"):
            events.append(event)
        if event.resource.name == "t2":
            break
    # The Mesh before the policy that needs it; one transaction: nothing in between.
    first = events[0].revision
    assert [(e.revision, e.resource.type, e.resource.name) for e in events] == [
        (first, "Mesh", "added"), (first + 1, "MeshTimeout", "t1"),
        (first + 2, "MeshTimeout", "t2")]


async def test_a_refused_mesh_delete_keeps_every_policy_and_secret(
        cp: GlobalControlPlane) -> None:
    async with client(cp) as c:
        secret = {"type": "Secret", "name": "s1", "mesh": "default", "data": "c2VjcmV0"}
        assert (await c.put("/meshes/default/secrets/s1", json=secret)).status_code == 201
        assert (await c.put("/meshes/default/meshtimeouts/t1",
                            json=timeout("t1"))).status_code == 201
        mesh = (await c.get("/meshes/default")).json()
        before = await contents(c, "default")
        assert before["secrets"] and before["meshtimeouts"] and before["meshtrafficpermissions"]

        r = await c.delete("/meshes/default", params={"version": mesh["version"] + 1})
        assert r.status_code == 409, r.text
        assert "version" in r.json()["detail"]
        assert await contents(c, "default") == before
        assert (await c.get("/meshes/default")).json() == mesh

        r = await c.delete("/meshes/default", params={"version": mesh["version"]})
        assert r.status_code == 200, r.text
        assert (await c.get("/meshes/default")).status_code == 404
    for kind in ("MeshTimeout", "MeshTrafficPermission", "Secret"):
        assert (await cp.store.list(ListQuery(kind, "default"))).total == 0  # type: ignore[union-attr]


async def test_a_mesh_with_dataplanes_is_not_deleted_nor_emptied(
        cp: GlobalControlPlane) -> None:
    store = cp.store
    assert store is not None
    async with client(cp) as c:
        dataplane = {"type": "Dataplane", "name": "dp-1", "mesh": "default",
                     "networking": {"address": "10.0.0.1", "inbound": [
                         {"port": 8080, "tags": {"gossamer.io/service": "web"}}]}}
        r = await c.put("/meshes/default/dataplanes/dp-1", json=dataplane)
        assert r.status_code == 201, r.text
        before = await contents(c, "default")
        start = await store.revision()
        r = await c.delete("/meshes/default")
        assert r.status_code == 409, r.text
        assert "dataplane" in r.json()["detail"]
        assert await contents(c, "default") == before
        # Nothing deleted, the Mesh and its Dataplane untouched (a controller's own
        # write, e.g. the mesh CA's secret, may land meanwhile).
        assert [e.resource.key for e in await events_since(cp, start)
                if e.type is EventType.DELETED
                or e.resource.type in ("Mesh", "Dataplane")] == []
        assert (await c.get("/meshes/default")).status_code == 200


async def test_a_mesh_delete_is_one_run_of_events_ending_with_the_mesh(
        cp: GlobalControlPlane) -> None:
    store = cp.store
    assert store is not None
    async with client(cp) as c:
        r = await c.post("/_apply", json={"documents": [timeout(f"t{i}") for i in range(5)]})
        assert r.status_code == 200, r.text
        children = sum(len(v) for v in (await contents(c, "default")).values())
        start = await store.revision()
        assert (await c.delete("/meshes/default")).status_code == 200
    events = []
    async for event in store.watch(start):  # the CA controller may write meanwhile too
        if event.type is EventType.DELETED and event.resource.mesh == "default":
            events.append(event)
        if event.type is EventType.DELETED and event.resource.type == "Mesh":
            events.append(event)
            break
    first = events[0].revision
    assert len(events) == children + 1
    assert [e.revision for e in events] == list(range(first, first + children + 1))
    assert (events[-1].resource.type, events[-1].resource.name) == ("Mesh", "default")
