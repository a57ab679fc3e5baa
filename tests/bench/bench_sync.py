"""Benchmark: how fast a change at the global reaches the zones, and how fast a zone resyncs.

Run ``.venv/bin/python -m tests.bench.bench_sync``. In one process: a global CP and
``--zones`` zone CPs (SQLite stores in a temporary directory), connected over real gRPC
with TLS on loopback.

1. Propagation: ``--changes`` policy updates applied at the global, one at a time; for
   each, the time from the write at the global until the change is *stored* in each zone
   (seen by the zone's own store watch). Reference in the same run: the time until the
   global's own store watch reports the write (the floor any propagation starts from).
2. Resync: ``--resources`` policies at the global; a new zone joins and the time until all
   are stored in it; then the zone stops, one policy changes, the zone restarts, and the
   time until that change is stored plus the number of resources the global sent (only
   what the zone missed should travel).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from global_cp.app import GlobalControlPlane
from gossamer.model.registry import parse_document
from gossamer.resources import ResourceManager
from gossamer.store.base import ListQuery, Store
from tests.cluster import start_global, start_zone
from tests.waiting import eventually
from zone_cp.app import ZoneControlPlane


def policy(i: int, timeout: str = "5s") -> dict[str, Any]:
    return {"type": "MeshTimeout", "name": f"bench-{i:05d}", "mesh": "default",
            "spec": {"to": [{"targetRef": {"kind": "MeshService", "name": f"svc-{i % 50}"},
                             "default": {"http": {"requestTimeout": timeout}}}]}}


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def watch_for(store: Store, name: str, marker: str, seen: dict[str, float]) -> None:
    """Record when ``name`` with ``marker`` in its spec is stored."""
    async for event in store.watch(await store.revision()):
        if event.resource.name == name and marker in str(event.resource.spec):
            seen[name] = time.perf_counter()
            return


async def propagation(global_cp: GlobalControlPlane, zones: list[ZoneControlPlane],
                      changes: int) -> tuple[list[float], list[float]]:
    assert global_cp.store is not None
    manager = ResourceManager(global_cp.store)
    await manager.apply(parse_document(policy(0)))
    for zone in zones:
        await eventually(lambda z=zone: _has(z.store, "bench-00000"), timeout=30)
    remote: list[float] = []
    local: list[float] = []
    for i in range(1, changes + 1):
        marker = f"{i}ms"
        stores: list[Any] = [global_cp.store, *(z.store for z in zones)]
        seen: list[dict[str, float]] = [{} for _ in stores]
        watchers = [asyncio.create_task(watch_for(s, "bench-00000", marker, d))
                    for s, d in zip(stores, seen, strict=True)]
        await asyncio.sleep(0)  # let every watcher subscribe before the write
        start = time.perf_counter()
        await manager.apply(parse_document(policy(0, marker)))
        await asyncio.wait_for(asyncio.gather(*watchers), timeout=30)
        local.append(seen[0]["bench-00000"] - start)
        remote += [d["bench-00000"] - start for d in seen[1:]]
    return local, remote


async def _has(store: Store | None, name: str) -> bool:
    assert store is not None
    page = await store.list(ListQuery("MeshTimeout", "default"))
    return any(r.name == name for r in page.items)


async def _count(store: Store | None) -> int:
    assert store is not None
    return (await store.list(ListQuery("MeshTimeout", "default", limit=1))).total


async def resync(global_cp: GlobalControlPlane, root: Path, resources: int) -> dict[str, float]:
    assert global_cp.store is not None
    manager = ResourceManager(global_cp.store)
    docs = [policy(i) for i in range(resources)]
    for chunk in _chunks(docs, 1000):
        await manager.apply_batch(chunk)
    start = time.perf_counter()
    zone = await start_zone(global_cp, "late", root / "zone-late", heartbeat=5, timeout=15)
    await eventually(lambda: _at_least(zone.store, resources), timeout=600, interval=0.05)
    full = time.perf_counter() - start
    await zone.stop()
    sent_before = global_cp.insights.get("late").sent.copy()
    await manager.apply(parse_document(policy(7, "77s")))
    start = time.perf_counter()
    zone = await start_zone(global_cp, "late", root / "zone-late", heartbeat=5, timeout=15,
                            token_file=root / "late.token")
    await eventually(lambda: _has_marker(zone.store, "bench-00007", "77s"), timeout=60)
    missed = time.perf_counter() - start
    await zone.stop()
    sent_after = global_cp.insights.get("late").sent
    url = "gossamer.io/MeshTimeout"
    return {"full_s": full, "missed_s": missed,
            "responses_after_reconnect": sent_after[url] - sent_before[url]}


async def _at_least(store: Store | None, n: int) -> bool:
    return await _count(store) >= n


async def _has_marker(store: Store | None, name: str, marker: str) -> bool:
    assert store is not None
    try:
        return marker in str((await store.get("MeshTimeout", name, "default")).spec)
    except Exception:
        return False


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


async def main(zones_n: int, changes: int, resources: int, propagate: bool = True) -> None:
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="gossamer-bench-sync-") as tmp:
        root = Path(tmp)
        global_cp = await start_global(root / "global", heartbeat=5, timeout=15)
        local: list[float] = []
        remote: list[float] = []
        if propagate:
            zones = [await start_zone(global_cp, f"z{i}", root / f"zone-{i}", heartbeat=5,
                                      timeout=15) for i in range(zones_n)]
            try:
                local, remote = await propagation(global_cp, zones, changes)
            finally:
                for zone in zones:
                    await zone.stop()
        result = await resync(global_cp, root, resources)
        await global_cp.stop()
    if local:
        print_propagation(changes, zones_n, local, remote)
    print(f"\n### Resync of {resources} resources\n")
    print(f"- a new zone stores all {resources}: {result['full_s']:.2f} s")
    print(f"- a zone that missed one change while down, from restart to stored: "
          f"{result['missed_s']:.2f} s; MeshTimeout responses sent after the reconnect: "
          f"{int(result['responses_after_reconnect'])}")


def print_propagation(changes: int, zones_n: int, local: list[float],
                      remote: list[float]) -> None:
    ms = 1e3
    print(f"\n### Propagation: {changes} changes to {zones_n} zones "
          f"({len(remote)} zone-stores)\n")
    print("| measure | p50 ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|")
    print(f"| global's own store watch (reference) | {pct(local, 50) * ms:.2f} | "
          f"{pct(local, 99) * ms:.2f} | {max(local) * ms:.2f} |")
    print(f"| stored in each zone | {pct(remote, 50) * ms:.2f} | {pct(remote, 99) * ms:.2f} | "
          f"{max(remote) * ms:.2f} |")
    print(f"\nratio p50 zone/reference: {statistics.median(remote) / statistics.median(local):.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--zones", type=int, default=10)
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--resources", type=int, default=10_000)
    parser.add_argument("--resync-only", action="store_true",
                        help="skip the propagation measurement")
    args = parser.parse_args()
    asyncio.run(main(args.zones, args.changes, args.resources, not args.resync_only))
