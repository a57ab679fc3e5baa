"""A batch is validated whole, in slices that give the event loop a turn, with every
problem reported at its document's index, and repeated keys found in linear time."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gossamer.errors import InvalidResource
from gossamer.resources import MAX_BATCH, PARSE_SLICE, ResourceManager
from gossamer.store.memory import MemoryStore


def timeout(name: str, seconds: Any = "5s") -> dict[str, Any]:
    return {"type": "MeshTimeout", "name": name, "mesh": "default",
            "spec": {"targetRef": {"kind": "Mesh"},
                     "to": [{"targetRef": {"kind": "Mesh"},
                             "default": {"connectionTimeout": seconds}}]}}


@pytest.fixture
def manager() -> ResourceManager:
    return ResourceManager(MemoryStore())


def paths(exc: InvalidResource) -> list[str]:
    return [e.path for e in exc.field_errors]


@pytest.mark.parametrize("sliced", [False, True])
async def test_every_problem_is_named_at_its_document(manager: ResourceManager,
                                                      sliced: bool) -> None:
    docs = [timeout("a"), timeout("b", seconds="soon"), timeout("a"), {"type": "Nope"},
            timeout("b"), timeout("c"), timeout("a")]
    with pytest.raises(InvalidResource) as caught:
        if sliced:
            await manager.parse_batch_sliced(docs)
        else:
            manager.parse_batch(docs)
    # Each document's own errors first, in document order; then the repeats, at the
    # index of the document that repeats a key (not its place among the valid ones).
    # "b" at 4 repeats no valid document: the "b" at 1 is invalid.
    assert paths(caught.value) == ["documents[1].spec.to[0].default.connectionTimeout",
                                   "documents[3].type", "documents[2]", "documents[6]"]
    assert caught.value.field_errors[-2].message == "MeshTimeout 'a' appears twice"


async def test_a_valid_batch_comes_back_in_order_with_versions(
        manager: ResourceManager) -> None:
    docs = [{**timeout(f"t{i}"), "version": i + 1} for i in range(3)]
    parsed = await manager.parse_batch_sliced(docs)
    assert [(r.name, v) for r, v in parsed] == [("t0", 1), ("t1", 2), ("t2", 3)]
    assert parsed == manager.parse_batch(docs)


async def test_too_many_documents_is_refused_before_anything_else(
        manager: ResourceManager) -> None:
    docs = [{"type": "Nope"}] * (MAX_BATCH + 1)
    with pytest.raises(InvalidResource, match=f"at most {MAX_BATCH}"):
        await manager.parse_batch_sliced(docs)


async def test_other_tasks_run_while_a_large_batch_is_validated(
        manager: ResourceManager) -> None:
    docs = [timeout(f"t{i}") for i in range(10 * PARSE_SLICE)]
    turns = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal turns
        while not done.is_set():
            turns += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    start = turns
    await manager.parse_batch_sliced(docs)
    during = turns - start
    done.set()
    await task
    assert during >= 9  # a turn after each full slice but the last


def test_a_key_repeated_at_the_end_of_a_full_batch_is_found(
        manager: ResourceManager) -> None:
    docs = [timeout(f"t{i}") for i in range(MAX_BATCH)]
    docs[-1] = timeout("t0")
    with pytest.raises(InvalidResource) as caught:
        manager.parse_batch(docs)
    assert paths(caught.value) == [f"documents[{MAX_BATCH - 1}]"]
