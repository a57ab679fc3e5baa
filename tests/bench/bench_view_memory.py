"""Benchmark: what the store's view (``gossamer.store.view``) costs a zone CP in memory.

Run ``.venv/bin/python -m tests.bench.bench_view_memory`` (``--size 20000``). A SQLite
store is filled with ``size`` policies (``tests.bench.policy_batch``: the batch of
``bench_policies``) plus the default mesh, then three ways of holding them are measured
with ``tracemalloc`` (bytes allocated and still held once each has loaded):

- **state only**: ``MeshState`` following the store itself (before the view existed);
- **state on the view**: the view following the store and ``MeshState`` following the
  view, as the zone CP runs now (the view's cost is its table, not the resources; the
  table's dict and keys are printed too);
- **state and a separate view**: ``MeshState`` and a view each following the store on
  their own, the copy this design avoids (the store's decode caches hold 10,000 rows,
  so beyond that each follower decodes its own objects).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import tempfile
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path

from gossamer.model.registry import parse_document
from gossamer.store.base import Put, Store
from gossamer.store.sqlite import SqliteStore
from gossamer.store.view import StoreView
from tests.bench.policy_batch import batch
from zone_cp.mesh_state import KINDS, MeshState

WAIT = 600.0


async def fill(path: Path, size: int) -> None:
    store = await SqliteStore.open(path)
    try:
        await store.write([Put(parse_document({"type": "Mesh", "name": "default"}))])
        docs = batch(size, 20, 50_000)
        for start in range(0, len(docs), 5000):
            await store.write([Put(parse_document(d)) for d in docs[start : start + 5000]])
    finally:
        await store.close()


async def measured(path: Path, build: Callable[[Store], Awaitable[list[object]]]) -> int:
    """Bytes held after ``build`` loaded its followers on a freshly opened store."""
    store = await SqliteStore.open(path)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    held: list[object] = []
    try:
        held = await build(store)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
        tasks = [t for t in held if isinstance(t, asyncio.Task)]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await store.close()
    return after - before


async def loaded(state: MeshState, count: int) -> None:
    async with asyncio.timeout(WAIT):
        while len(state.policies("default")) < count:
            await asyncio.sleep(0.05)


def runner(size: int) -> dict[str, Callable[[Store], Awaitable[list[object]]]]:
    async def state_only(store: Store) -> list[object]:
        state = MeshState(store, "zone")
        task = asyncio.create_task(state.run())
        await loaded(state, size)
        return [state, task]

    async def on_view(store: Store) -> list[object]:
        view = StoreView(store, shared=False)
        state = MeshState(view, "zone")
        tasks = [asyncio.create_task(view.run()), asyncio.create_task(state.run())]
        await loaded(state, size)
        tables = view._by_kind.values()
        table = sum(sys.getsizeof(t) + sum(sys.getsizeof(k) for k in t) for t in tables)
        print(
            f"{'the view table itself':28s} {table / 2**20:8.1f} MiB ({len(view)} resources)",
            flush=True,
        )
        return [view, state, *tasks]

    async def separate(store: Store) -> list[object]:
        view = StoreView(store, kinds=KINDS, shared=False)
        state = MeshState(store, "zone")
        tasks = [asyncio.create_task(view.run()), asyncio.create_task(state.run())]
        await loaded(state, size)
        await view.loaded.wait()
        return [view, state, *tasks]

    return {
        "state only": state_only,
        "state on the view": on_view,
        "state and a separate view": separate,
    }


async def main_async(size: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-view-memory-") as tmp:
        path = Path(tmp) / "store.db"
        await fill(path, size)
        results = {}
        for name, build in runner(size).items():
            results[name] = await measured(path, build)
            print(f"{name:28s} {results[name] / 2**20:8.1f} MiB", flush=True)
        base = results["state only"]
        for name in ("state on the view", "state and a separate view"):
            extra = results[name] - base
            print(f"{name:28s} +{extra / 2**20:.1f} MiB over state only ({extra / base:.0%})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=20_000)
    asyncio.run(main_async(parser.parse_args().size))


if __name__ == "__main__":
    main()
