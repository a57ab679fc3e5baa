"""Benchmark: a zone CP's connect phase in-process, sidecars joining one by one.

Run ``.venv/bin/python -m tests.bench.bench_fleet_connect --proxies 5000`` (``--services``
defaults to proxies / 20, ``--checkpoints 1000,2000,5000``). The zone's parts that follow
its ``MeshState`` run as the zone CP runs them, on one store: a ``StoreView`` over a memory
store (``--sqlite`` for the zone's default store), the ``MeshState``, the ``VipView``, the
``VipAllocator`` and a ``DnsPublisher`` with one agent session, and the ``Fleet`` with its
round task. Each sidecar then registers as ``zone_cp.agents`` does (its Dataplane
written to the store) and its stream joins the fleet (``xds.AdsServer._follow``) with a
delta ``Engine`` behind it; the next sidecar comes once the fleet's round for this one
has run. The mesh is ``bench_fleet``'s (``layout``: one inbound, four explicit outbounds,
no VIP listeners, every fifth service TCP).

Reported per checkpoint: the CPU time per join (store write, state, round, first
generation, VIP allocation) over the last ``--window`` joins before it, the longest loop
turn and the fleet's rounds. ``--cp-tree DIR`` imports the control plane from a source
tree instead (e.g. ``git archive main | tar -x -C DIR``), so a before and after run in
the same conditions; the harness itself is this file.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any


class LoopWatch:
    """The longest gap between two turns of the event loop (a task that sleeps 0)."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            self.longest = max(self.longest, now - last)
            last = now

    def take(self) -> float:
        out, self.longest = self.longest, 0.0
        return out

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


async def run(
    proxies: int,
    services: int,
    checkpoints: list[int],
    window: int,
    sqlite: Path | None,
    profile: Path | None = None,
) -> dict[str, Any]:
    # Imported here so that ``--cp-tree`` can put another tree first on the path.
    from authority.bootstrap import DEFAULT_MESH
    from gossamer.model.registry import parse_document
    from gossamer.resources import ResourceManager
    from gossamer.store.memory import MemoryStore
    from gossamer.store.view import StoreView
    from proxy.envoy import PieceCache
    from sync.engine import Engine
    from tests.bench.bench_fleet import layout
    from tests.bench.fleet.sidecar import Spec
    from tests.waiting import eventually
    from zone_cp.fleet import Fleet
    from zone_cp.mesh_dns import VipView
    from zone_cp.mesh_state import MeshState
    from zone_cp.vip_controller import DnsPublisher, VipAllocator
    from zone_cp.vips import parse_cidr
    from zone_cp.xds import ADS_BOUNDS

    if sqlite is not None:
        from gossamer.store.sqlite import SqliteStore

        store: Any = await SqliteStore.open(sqlite)
    else:
        store = MemoryStore()
    manager = ResourceManager(store)
    await manager.apply(parse_document(DEFAULT_MESH, manager.registry))
    view = StoreView(store, shared=False)
    state = MeshState(view, "bench")
    vip_view = VipView(state)
    session = SimpleNamespace(mesh="default", updates=asyncio.Queue())
    agents = SimpleNamespace(sessions={"one": session}, on_change=lambda _: None)
    DnsPublisher(state, agents, vip_view)  # type: ignore[arg-type]
    allocator = VipAllocator(state, manager, parse_cidr("240.0.0.0/4"))
    # A round per change (no spacing): the worst case of joins arriving one by one.
    fleet = Fleet(state, vip_view, PieceCache(), interval=0.0)
    busy = Busy(fleet, allocator)
    tasks = [
        asyncio.create_task(c) for c in (view.run(), state.run(), fleet.run(), allocator.run())
    ]
    await eventually(lambda: state.generation > 0, what="the state to load")
    watch = LoopWatch()
    watch.start()
    specs = [Spec(**s) for s in layout(0, "zone", proxies, services)]
    engines: list[Engine] = []
    out: dict[str, Any] = {"proxies": proxies, "services": services, "checkpoints": []}
    marks = {c - min(window, c): c for c in checkpoints if c <= proxies}
    started_cpu = started_wall = 0.0
    profiler = cProfile.Profile() if profile is not None else None
    rounds = regenerations = 0
    for i, spec in enumerate(specs):
        if i in marks:
            watch.take()
            regenerations = fleet.regenerations
            started_cpu, started_wall, rounds = (
                time.process_time(),
                time.perf_counter(),
                fleet.rounds,
            )
            if profiler is not None and marks[i] == max(marks.values()):
                profiler.enable()  # the last window only
        dp = parse_document(spec.document("default"), manager.registry)
        before = state.generation
        await manager.apply(dp)  # the agent registry stores the registered Dataplane
        await eventually(lambda b=before: state.generation > b, what="the state", interval=0.0005)
        engine = Engine(bounds=ADS_BOUNDS)
        engines.append(engine)

        def deliver(_generated: object, entries: dict[str, Any], e: Engine = engine) -> None:
            for type_url, resources in entries.items():
                e.set_desired(type_url, resources)

        engine.connect(spec.name)
        fleet.join(spec.name, dp, deliver)
        await settled(busy, state)
        if i + 1 in checkpoints:
            n = i + 1 - next(k for k, c in marks.items() if c == i + 1)
            cpu, wall = time.process_time() - started_cpu, time.perf_counter() - started_wall
            point = {
                "members": i + 1,
                "joins": n,
                "cpu_ms_per_join": round(1000 * cpu / n, 3),
                "wall_ms_per_join": round(1000 * wall / n, 3),
                "longest_loop_turn_ms": round(1000 * watch.take(), 1),
                "rounds": fleet.rounds - rounds,
                "regenerations_per_join": round((fleet.regenerations - regenerations) / n, 1),
            }
            out["checkpoints"].append(point)
            print(json.dumps(point), file=sys.stderr, flush=True)
    watch.stop()
    if profiler is not None and profile is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return out


class Busy:
    """Whether the fleet or the VIP allocator has work in hand: their rounds are wrapped
    to count those running, and their wake-up events say whether one is due."""

    def __init__(self, fleet: Any, allocator: Any) -> None:
        self._fleet, self._allocator = fleet, allocator
        self.running = 0
        for part, name in ((fleet, "round"), (allocator, "reconcile")):
            setattr(part, name, self._counted(getattr(part, name)))

    def _counted(self, step: Any) -> Any:
        async def counted() -> Any:
            self.running += 1
            try:
                return await step()
            finally:
                self.running -= 1

        return counted

    def __call__(self) -> bool:
        return bool(self.running or self._fleet._wanted.is_set() or self._allocator._wake.is_set())


async def settled(busy: Busy, state: Any) -> None:
    """Until the state stopped moving and nothing is busy (three polls in a row)."""
    quiet, generation = 0, -1
    while quiet < 3:
        await asyncio.sleep(0.001)
        quiet = quiet + 1 if not busy() and state.generation == generation else 0
        generation = state.generation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--proxies", type=int, default=2000)
    parser.add_argument("--services", type=int, default=0, help="default: proxies / 20")
    parser.add_argument("--checkpoints", default="1000,2000,5000,10000")
    parser.add_argument(
        "--window", type=int, default=200, help="joins measured before each checkpoint"
    )
    parser.add_argument("--sqlite", action="store_true", help="a SQLite store, not memory")
    parser.add_argument(
        "--cp-tree", type=Path, metavar="DIR", help="import the control plane from this source tree"
    )
    parser.add_argument(
        "--profile", type=Path, metavar="FILE", help="cProfile the last window into FILE"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.cp_tree is not None:
        if not (args.cp_tree / "zone_cp" / "fleet.py").is_file():
            parser.error(f"--cp-tree {args.cp_tree}: no zone_cp/fleet.py there")
        # Before any of the control plane is imported; ``tests`` (this harness and its
        # helpers) is already this tree's.
        sys.path.insert(0, str(args.cp_tree.resolve()))
    services = args.services or max(1, args.proxies // 20)
    checkpoints = sorted(int(c) for c in args.checkpoints.split(",") if c)
    with tempfile.TemporaryDirectory(prefix="bench-connect-") as tmp:
        result = asyncio.run(
            run(
                args.proxies,
                services,
                checkpoints,
                args.window,
                Path(tmp) / "zone.db" if args.sqlite else None,
                args.profile,
            )
        )
    for p in result["checkpoints"]:
        print(
            f"{p['members']:6} members: {p['cpu_ms_per_join']:8.2f} ms CPU per join "
            f"(last {p['joins']}), longest loop turn {p['longest_loop_turn_ms']} ms"
        )
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
