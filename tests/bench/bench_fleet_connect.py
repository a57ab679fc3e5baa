"""Benchmark: a zone CP's connect phase in-process, sidecars joining one by one.

Run ``.venv/bin/python -m tests.bench.bench_fleet_connect --proxies 5000`` (``--services``
defaults to proxies / 20; ``--checkpoints`` those of 1,000, 2,000, 5,000 and 10,000 that
fit). The zone's parts that follow its ``MeshState`` run as the zone CP runs them, on one
store: a ``StoreView`` over a memory store (``--sqlite`` for the zone's default store),
the ``MeshState``, the ``VipView``, the ``VipAllocator`` and a ``DnsPublisher`` with one
agent session, and the ``Fleet`` with its round task; the garbage collector is paced as
``gossamer.process`` paces it. Each sidecar then registers as ``zone_cp.agents`` does
(its Dataplane written to the store) and its stream joins the fleet
(``xds.AdsServer._follow``) with a delta ``Engine`` behind it; the next sidecar comes
once the fleet and the allocator are idle again (``interval`` 0: a round per
registration). The mesh is ``bench_fleet``'s (``layout``: one inbound, four explicit
outbounds, no VIP listeners, every fifth service TCP).

Reported per checkpoint: the CPU time per join (store write, state, round, first
generation, VIP allocation) over the last ``--window`` joins before it, the longest loop
turn (wall and CPU), the fleet's rounds and regenerations. ``--streams`` puts a stream
behind each member (subscribed as Envoy subscribes; a delivery wakes it to send and take
the ACKs); ``--mesh-wide`` then applies a MeshTimeout on the Mesh and reports its CPU,
wall time and longest loop turn; ``--profile FILE`` profiles the last window.
``--cp-tree DIR`` imports the control plane from a source tree instead (e.g. ``git
archive main | tar -x -C DIR``), so a before and after run in the same conditions; the
harness itself is this file.
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
    """The longest gap between two turns of the event loop (a task that sleeps 1 ms), in
    wall time and in this process's CPU time (on a shared machine the wall time includes
    time the process waited for a core)."""

    def __init__(self) -> None:
        self.longest = self.longest_cpu = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        last, last_cpu = time.perf_counter(), time.process_time()
        while True:
            await asyncio.sleep(0.001)
            now, cpu = time.perf_counter(), time.process_time()
            self.longest = max(self.longest, now - last)
            self.longest_cpu = max(self.longest_cpu, cpu - last_cpu)
            last, last_cpu = now, cpu

    def take(self) -> tuple[float, float]:
        """The longest gaps (wall, CPU) since the last ``take``, in milliseconds."""
        out = (round(1000 * self.longest, 1), round(1000 * self.longest_cpu, 1))
        self.longest = self.longest_cpu = 0.0
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
    streams: bool = False,
    mesh_wide: bool = False,
) -> dict[str, Any]:
    # Imported here so that ``--cp-tree`` can put another tree first on the path.
    from authority.bootstrap import DEFAULT_MESH
    from gossamer import gc_pacing
    from gossamer.model.registry import parse_document
    from gossamer.resources import ResourceManager
    from gossamer.store.memory import MemoryStore
    from gossamer.store.view import StoreView
    from proxy.envoy import PieceCache
    from sync.engine import Engine
    from sync.messages import Request
    from tests.bench.bench_fleet import layout
    from tests.bench.bench_fleet_round import exchange, timeout
    from tests.bench.fleet.sidecar import Spec
    from tests.waiting import eventually
    from zone_cp.fleet import Fleet
    from zone_cp.mesh_dns import VipView
    from zone_cp.mesh_state import MeshState
    from zone_cp.vip_controller import DnsPublisher, VipAllocator
    from zone_cp.vips import parse_cidr
    from zone_cp.xds import ADS_BOUNDS
    from zone_cp.xds_resources import ENDPOINT_TYPE, ROUTE_TYPE, TYPE_URLS

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
    # The zone CP's garbage collector pacing (gossamer.process), its tasks on the state.
    tasks = [
        asyncio.create_task(c)
        for c in (gc_pacing.pace(), view.run(), state.run(), fleet.run(), allocator.run())
    ]
    loop = asyncio.get_running_loop()
    due: set[str] = set()

    def send(engine: Engine, sid: str) -> None:
        """What a stream does when woken: send what is due, serialized, and take the
        ACKs (one loop callback per stream, as a woken stream task is)."""
        due.discard(sid)
        exchange(engine, sid, engine.pending(sid, 0.0))

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

        def deliver(
            _generated: object, entries: dict[str, Any], e: Engine = engine, sid: str = spec.name
        ) -> None:
            for type_url, resources in entries.items():
                e.set_desired(type_url, resources)
            if streams and sid not in due:  # the stream's wake-up
                due.add(sid)
                loop.call_soon(send, e, sid)

        engine.connect(spec.name)
        fleet.join(spec.name, dp, deliver)
        if streams:  # subscribed as Envoy subscribes: LDS and CDS wildcard, EDS and RDS by name
            queue = []
            for type_url in TYPE_URLS.values():
                named = frozenset(engine.desired(type_url))
                queue += engine.on_request(
                    spec.name,
                    Request(
                        type_url=type_url,
                        subscribe=named if type_url in (ENDPOINT_TYPE, ROUTE_TYPE) else frozenset(),
                    ),
                    0.0,
                )
            exchange(engine, spec.name, queue)
        await settled(busy, state)
        if i + 1 in checkpoints:
            n = i + 1 - next(k for k, c in marks.items() if c == i + 1)
            cpu, wall = time.process_time() - started_cpu, time.perf_counter() - started_wall
            point = {
                "members": i + 1,
                "joins": n,
                "cpu_ms_per_join": round(1000 * cpu / n, 3),
                "wall_ms_per_join": round(1000 * wall / n, 3),
                "longest_loop_turn_ms": watch.take(),
                "rounds": fleet.rounds - rounds,
                "regenerations_per_join": round((fleet.regenerations - regenerations) / n, 1),
            }
            out["checkpoints"].append(point)
            print(json.dumps(point), file=sys.stderr, flush=True)
    if mesh_wide:
        out["mesh_wide"] = await change_all(
            fleet,
            state,
            manager,
            busy,
            watch,
            parse_document(timeout("all", {"kind": "Mesh"}, 7), manager.registry),
        )
    watch.stop()
    if profiler is not None and profile is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return out


async def change_all(
    fleet: Any, state: Any, manager: Any, busy: Busy, watch: LoopWatch, doc: Any
) -> dict[str, Any]:
    """Apply a mesh-wide change and wait until every proxy has it (and the streams sent
    it): its CPU, wall time and the longest loop turn meanwhile."""
    await settled(busy, state)
    watch.take()
    regenerations, cpu, wall = fleet.regenerations, time.process_time(), time.perf_counter()
    await manager.apply(doc)
    await settled(busy, state)
    for _ in range(3):  # the streams' callbacks the last slice scheduled
        await asyncio.sleep(0.001)
    return {
        "regenerated": fleet.regenerations - regenerations,
        "cpu_s": round(time.process_time() - cpu, 3),
        "wall_s": round(time.perf_counter() - wall, 3),
        "longest_loop_turn_ms": watch.take(),
    }


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
    parser.add_argument(
        "--streams",
        action="store_true",
        help="each delivery wakes a stream that sends and takes the ACKs",
    )
    parser.add_argument(
        "--mesh-wide",
        action="store_true",
        help="then a MeshTimeout on the Mesh: its CPU and loop turns",
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
                args.streams,
                args.mesh_wide,
            )
        )
    if "mesh_wide" in result:
        print(f"mesh-wide change: {result['mesh_wide']}")
    for p in result["checkpoints"]:
        print(
            f"{p['members']:6} members: {p['cpu_ms_per_join']:8.2f} ms CPU per join "
            f"(last {p['joins']}), longest loop turn {p['longest_loop_turn_ms']} ms"
        )
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
