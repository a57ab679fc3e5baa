"""Benchmark: matching one proxy with and without the policy index, by policies in the mesh.

Run ``.venv/bin/python -m tests.bench.bench_policy_index`` (``--policies 100 20000``,
``--rounds``). For each size it builds a mesh of that many policies in ``policy_order``
(as ``MeshState.policies`` keeps them) and measures, in the same run, the CPU time of
matching one proxy as the zone CP does (``match_policies(..., only_destinations=True,
presorted=True)`` with its outbounds as destinations):

- **unindexed**: against every policy of the mesh (the reference);
- **indexed**: ``PolicyIndex.candidates(view)`` and a match against those;
- **build**: ``PolicyIndex(policies, zone)``, paid once per change for all proxies
  (policies carry store metadata, as the zone CP's do).

With ``--update`` it measures instead one policy update in a ``MeshState`` following a
``MemoryStore`` per size: the CPU time from the store write to the state having applied
it plus one ``candidates(view)`` and ``route_backends(mesh).reachable(outbounds)`` for
the proxy (checked to return the updated policy), sizes alternating per round.

Both matches must give the same ``ProxyPolicies`` (checked). The mesh has the shape issue
18 describes, scaled so that the measured proxy has the same candidates at every size:
four mesh-wide policies (MeshTimeout, MeshRetry, MeshCircuitBreaker, an allow-all
MeshTrafficPermission), then per service a MeshTimeout and a MeshRetry on it and a
MeshTrafficPermission for each of its 8 callers (the service pairs), and a MeshTimeout
on a tag the proxy lacks to reach the exact count. Services grow with the size: 9 at 100
policies, 1,999 at 20,000. Times are medians over ``--rounds`` rounds of CPU time
(``time.process_time``), indexed and unindexed alternating, so load on the shared
machine hits both alike; the ratios are what to compare across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

from gossamer.model.base import Meta, Resource
from gossamer.model.registry import parse_document
from gossamer.policy import PolicyIndex, ProxyView, match_policies, policy_order
from gossamer.store.base import Create
from gossamer.store.memory import MemoryStore
from tests.builders import dataplane
from zone_cp.mesh_state import MeshState

ZONE = "east"
SVC = "gossamer.io/service"
CALLERS = 8
PER_SERVICE = 2 + CALLERS
MESH_WIDE = 4


def svc(i: int, services: int) -> str:
    return f"svc-{i % services:05d}"


def doc(kind: str, name: str, target: dict[str, Any], **sections: Any) -> dict[str, Any]:
    return {"type": kind, "name": name, "mesh": "default",
            "spec": {"targetRef": target, **sections}}


def to(name: str | None, default: dict[str, Any]) -> dict[str, Any]:
    ref = {"kind": "Mesh"} if name is None else {"kind": "MeshService", "name": name}
    return {"targetRef": ref, "default": default}


def mesh_wide() -> Iterator[dict[str, Any]]:
    mesh = {"kind": "Mesh"}
    yield doc("MeshTimeout", "timeouts", mesh, to=[to(None, {"connectionTimeout": "2s"})])
    yield doc("MeshRetry", "retries", mesh, to=[to(None, {"tcp": {"maxConnectAttempt": 2}})])
    yield doc("MeshCircuitBreaker", "breakers", mesh,
              to=[to(None, {"connectionLimits": {"maxConnections": 1024}})])
    yield doc("MeshTrafficPermission", "allow-all", mesh,
              **{"from": [{"targetRef": mesh, "default": {"action": "Allow"}}]})


def per_service(i: int, services: int) -> Iterator[dict[str, Any]]:
    name = svc(i, services)
    target = {"kind": "MeshService", "name": name}
    yield doc("MeshTimeout", f"mt-{name}", target,
              to=[to(svc(i + k, services), {"connectionTimeout": f"{k}s"}) for k in (1, 2, 3)])
    yield doc("MeshRetry", f"mr-{name}", target,
              to=[to(svc(i + 1, services), {"tcp": {"maxConnectAttempt": 4}})])
    for k in range(1, CALLERS + 1):
        caller = svc(i - k, services)
        yield doc("MeshTrafficPermission", f"mtp-{caller}-{name}", target, **{"from": [
            {"targetRef": {"kind": "MeshService", "name": caller},
             "default": {"action": "Allow"}}]})


def mesh_docs(count: int) -> tuple[list[dict[str, Any]], int]:
    """``count`` policy documents, and the number of services they cover."""
    services = (count - MESH_WIDE) // PER_SERVICE
    docs = list(mesh_wide())
    for i in range(services):
        docs += per_service(i, services)
    for j in range(count - len(docs)):  # on a tag the measured proxy does not carry
        docs.append(doc("MeshTimeout", f"canary-{j}", {
            "kind": "MeshSubset", "tags": {"version": f"canary-{j}"}},
            to=[to(None, {"idleTimeout": "1h"})]))
    return docs, services


def measured_proxy(services: int) -> Resource:
    """The proxy every size measures: service 0, calling services 1-3."""
    return dataplane("svc-00000-1", svc(0, services), tags={"version": "v1"},
                     outbounds=[{"port": 20001 + k, "tags": {SVC: svc(k + 1, services)}}
                                for k in range(3)])


def mesh_policies(count: int) -> tuple[list[Resource], int]:
    """``count`` policies in ``policy_order``, and the number of services they cover."""
    docs, services = mesh_docs(count)
    # As a store returns them: a version and a revision each (what a candidate set's
    # identity reads; an unstored policy would be keyed by its canonical spec instead).
    stored = [dataclasses.replace(parse_document(d), meta=Meta(version=1, revision=i + 1))
              for i, d in enumerate(docs)]
    return sorted(stored, key=policy_order), services


def cpu(fn: Callable[[], Any], repeat: int) -> float:
    """CPU seconds per call of ``fn``, over ``repeat`` calls."""
    start = time.process_time()
    for _ in range(repeat):
        fn()
    return (time.process_time() - start) / repeat


def measure(count: int, rounds: int) -> dict[str, Any]:
    policies, services = mesh_policies(count)
    proxy = measured_proxy(services)
    destinations = [svc(k + 1, services) for k in range(3)]
    kw: dict[str, Any] = {"destinations": destinations, "zone": ZONE,
                          "only_destinations": True, "presorted": True}
    build_s = cpu(lambda: PolicyIndex(policies, zone=ZONE), max(1, rounds // 4))
    index = PolicyIndex(policies, zone=ZONE)

    def indexed() -> Any:
        return match_policies(proxy, index.candidates(ProxyView.of(proxy, ZONE)), **kw)

    def unindexed() -> Any:
        return match_policies(proxy, policies, **kw)

    assert indexed() == unindexed(), "the indexed match differs from the full match"
    repeat = max(1, 2000 // max(1, count // 100))  # a round of unindexed: ~0.1-0.5 s
    fast, slow = [], []
    for _ in range(rounds):
        fast.append(cpu(indexed, 200))
        slow.append(cpu(unindexed, repeat))
    return {"policies": len(policies), "services": services,
            "candidates": len(index.candidates(ProxyView.of(proxy, ZONE))),
            "indexed_us": statistics.median(fast) * 1e6,
            "unindexed_us": statistics.median(slow) * 1e6, "build_ms": build_s * 1e3}


class Followed:
    """One mesh of ``count`` policies in a ``MemoryStore``, followed by a ``MeshState``.

    The store keeps few events (``retention``): ``MemoryStore.watch`` scans its retained
    events on every wake, a cost of the test store, not of ``MeshState``."""

    def __init__(self, count: int) -> None:
        self.docs, services = mesh_docs(count)
        self.count = count
        self.store = MemoryStore(retention=16)
        self.state = MeshState(self.store, ZONE)
        self.proxy = measured_proxy(services)
        self.view = ProxyView.of(self.proxy, ZONE)
        self.outbounds = self.view.outbound_services
        self.target = next(d for d in self.docs if d["name"] == f"mt-{svc(0, services)}")
        self.applied = asyncio.Event()
        self.state.listen(self._heard)
        self.task: asyncio.Task[None] | None = None

    def _heard(self, res: Resource | None) -> None:
        if res is None or res.name == self.target["name"]:
            self.applied.set()

    async def start(self) -> None:
        mesh = parse_document({"type": "Mesh", "name": "default"})
        await self.store.write([Create(mesh), Create(self.proxy),
                                *(Create(parse_document(d)) for d in self.docs)])
        self.task = asyncio.create_task(self.state.run())
        await asyncio.wait_for(self.applied.wait(), 120)

    async def update(self, seconds: int) -> float:
        """CPU seconds from writing the target policy to a proxy's lookup seeing it."""
        self.applied.clear()
        current = await self.store.get("MeshTimeout", self.target["name"], "default")
        changed = parse_document({**self.target, "spec": {
            **self.target["spec"], "to": [to(None, {"connectionTimeout": f"{seconds}s"})]}})
        start = time.process_time()
        await self.store.update(changed, current.meta.version)
        await asyncio.wait_for(self.applied.wait(), 30)
        found = self.state.candidates(self.view).policies
        self.state.route_backends("default").reachable(self.outbounds)
        spent = time.process_time() - start
        stored = self.state.get("MeshTimeout", self.target["name"], "default")
        assert stored is not None and any(p is stored for p in found), "update not seen"
        return spent

    async def stop(self) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def measure_updates(counts: list[int], rounds: int) -> list[dict[str, Any]]:
    """Median CPU time of one policy update per mesh size, sizes alternating per round."""
    meshes = [Followed(n) for n in counts]
    for m in meshes:
        await m.start()
    samples: list[list[float]] = [[] for _ in meshes]
    for r in range(rounds):
        for m, found in zip(meshes, samples, strict=True):
            found.append(await m.update(1 + r % 7))
    for m in meshes:
        await m.stop()
    return [{"policies": m.count, "update_us": statistics.median(found) * 1e6}
            for m, found in zip(meshes, samples, strict=True)]


def report_updates(rows: list[dict[str, Any]]) -> None:
    print("| policies | one update, store write to lookup µs (CPU) |")
    print("|---:|---:|")
    for r in rows:
        print(f"| {r['policies']:,} | {r['update_us']:,.0f} |")
    print(f"\nlargest / smallest mesh: {rows[-1]['update_us'] / rows[0]['update_us']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policies", type=int, nargs="+", default=[100, 20000])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--update", action="store_true",
                        help="measure one policy update in a followed MeshState instead")
    a = parser.parse_args()
    if any(n < MESH_WIDE + PER_SERVICE * (CALLERS + 1) for n in a.policies):
        parser.error(f"--policies: each size needs at least "
                     f"{MESH_WIDE + PER_SERVICE * (CALLERS + 1)} policies (a service and its "
                     f"{CALLERS} callers)")
    if a.update:
        report_updates(asyncio.run(measure_updates(a.policies, a.rounds)))
        return
    rows = [measure(n, a.rounds) for n in a.policies]
    print("| policies | services | candidates | unindexed µs | indexed µs "
          "| unindexed / indexed | index build ms (µs/policy) |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['policies']:,} | {r['services']:,} | {r['candidates']} "
              f"| {r['unindexed_us']:,.0f} | {r['indexed_us']:,.0f} "
              f"| {r['unindexed_us'] / r['indexed_us']:.1f} "
              f"| {r['build_ms']:,.1f} ({r['build_ms'] * 1e3 / r['policies']:.1f}) |")
    first, last = rows[0], rows[-1]
    print(f"\nlargest / smallest mesh: indexed {last['indexed_us'] / first['indexed_us']:.2f}, "
          f"unindexed {last['unindexed_us'] / first['unindexed_us']:.2f}")


if __name__ == "__main__":
    main()
