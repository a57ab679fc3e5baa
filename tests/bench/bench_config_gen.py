"""Benchmark: Envoy config generation time and zone CP memory per proxy, by mesh size.

Run ``.venv/bin/python -m tests.bench.bench_config_gen`` (``--services 100 1000``). For
each size a fresh child process (so one size's freed memory does not hide the next
one's growth) fills a memory store with the mesh, lets a ``MeshState`` follow it as the
zone CP does, and measures:

- **CPU time per proxy**, in one pass over every Dataplane of the mesh:
  ``MeshState.context_for(dp)``; ``generate(ctx, cache)`` with one ``PieceCache``
  shared by all proxies, first as the proxy's first generation (the cache holds what
  earlier proxies put there), then the same proxy again (every piece cached: what a
  regeneration after an unrelated change finds); the reference in the same run,
  ``generate(ctx)`` without a cache; and the encoding the xDS server does before handing
  resources to the engine (``zone_cp.xds.encode``: deterministic serialization and a
  SHA-256 version). context_for + generate (cached) + encode, times the proxies, is
  what one mesh change costs the zone CP: every connected proxy is regenerated after
  any change (``zone_cp.xds``);
- **memory per proxy** held as the zone CP holds a connected proxy: its generated
  resources (``ProxyInsight.generated``, pieces shared through the cache) and its delta
  ``Engine`` with the encoded desired state and a session that has ACKed everything.
  RSS growth over the whole pass, divided by the proxies (the shared cache included);
  then, with tracemalloc running, a sample of proxies held once more with the cache
  already full: Python allocations per additional proxy (protobuf messages live in
  upb's C arenas, which tracemalloc does not see, so this is below the RSS figure).

The mesh: N services with ``--instances`` Dataplanes each (one inbound; every fifth
service TCP, the others HTTP; tag ``version`` v1/v2 by instance) and ``--outbounds``
explicit outbounds to the next services; the default mesh's allow-all permission, a
mesh-wide MeshTimeout and MeshRetry; per tenth service a MeshTrafficPermission and a
MeshCircuitBreaker; per twentieth an 80/20 MeshHTTPRoute split by version.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from authority.bootstrap import ALLOW_ALL, DEFAULT_MESH
from gossamer.model.base import Resource
from gossamer.model.registry import parse_document
from gossamer.resources import ResourceManager
from gossamer.store.memory import MemoryStore
from proxy.envoy import PieceCache, ProxyResources, generate
from sync.engine import Engine
from sync.messages import Entry, Request
from tests.builders import dataplane_doc
from tests.waiting import eventually
from zone_cp.mesh_state import MeshState
from zone_cp.xds_resources import TYPE_URLS, ProxyInsight, encode, entries

SVC = "gossamer.io/service"
PROTO = "gossamer.io/protocol"
T = TypeVar("T")


# -- the mesh --------------------------------------------------------------------------------

def service(i: int) -> str:
    return f"svc-{i:04d}"


def dataplane(i: int, instance: int, n: int, instances: int, outbounds: int) -> dict[str, Any]:
    k = i * instances + instance + 1
    protocol = "tcp" if i % 5 == 4 else "http"
    return dataplane_doc(f"{service(i)}-{instance}", service(i),
                         address=f"10.{k >> 16 & 255}.{k >> 8 & 255}.{k & 255}",
                         tags={PROTO: protocol, "version": f"v{instance % 2 + 1}"},
                         outbounds=[{"port": 20000 + j, "tags": {SVC: service((i + j) % n)}}
                                    for j in range(1, min(outbounds, n - 1) + 1)])


def _to(kind: str, name: str, target: str, default: dict[str, Any]) -> dict[str, Any]:
    return {"type": kind, "mesh": "default", "name": name,
            "spec": {"targetRef": {"kind": "Mesh"},
                     "to": [{"targetRef": {"kind": "MeshService", "name": target},
                             "default": default}]}}


def policies(n: int) -> Iterator[dict[str, Any]]:
    yield {"type": "MeshTimeout", "mesh": "default", "name": "timeouts", "spec": {
        "targetRef": {"kind": "Mesh"},
        "to": [{"targetRef": {"kind": "Mesh"},
                "default": {"connectionTimeout": "2s", "http": {"requestTimeout": "10s"}}}],
        "from": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": "10m"}}]}}
    yield {"type": "MeshRetry", "mesh": "default", "name": "retries", "spec": {
        "targetRef": {"kind": "Mesh"},
        "to": [{"targetRef": {"kind": "Mesh"},
                "default": {"http": {"numRetries": 2, "perTryTimeout": "1s",
                                     "retryOn": ["5xx", "reset"]}}}]}}
    for j in range(0, n, 10):
        yield {"type": "MeshTrafficPermission", "mesh": "default", "name": f"mtp-{j}",
               "spec": {"targetRef": {"kind": "MeshService", "name": service(j)},
                        "from": [{"targetRef": {"kind": "MeshService",
                                                "name": service((j - 1) % n)},
                                  "default": {"action": "Allow"}},
                                 {"targetRef": {"kind": "Mesh"},
                                  "default": {"action": "Deny"}}]}}
        yield _to("MeshCircuitBreaker", f"mcb-{j}", service(j), {
            "connectionLimits": {"maxConnections": 100, "maxPendingRequests": 50},
            "outlierDetection": {"detectors": {"totalFailures": {"consecutive": 5}}}})
    for j in range(0, n, 20):
        yield {"type": "MeshHTTPRoute", "mesh": "default", "name": f"route-{j}", "spec": {
            "targetRef": {"kind": "Mesh"},
            "to": [{"targetRef": {"kind": "MeshService", "name": service(j)},
                    "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                               "default": {"backendRefs": [
                                   {"kind": "MeshServiceSubset", "name": service(j),
                                    "tags": {"version": v}, "weight": w}
                                   for v, w in (("v1", 80), ("v2", 20))]}}]}]}}


async def mesh_state(n: int, instances: int, outbounds: int) -> MeshState:
    """A MeshState following a memory store that holds the whole mesh."""
    manager = ResourceManager(MemoryStore())
    docs = [DEFAULT_MESH, ALLOW_ALL, *policies(n)]
    docs += [dataplane(i, k, n, instances, outbounds) for i in range(n) for k in range(instances)]
    for doc in docs:
        await manager.apply(parse_document(doc, manager.registry))
    state = MeshState(manager.store, zone="lab")
    task = asyncio.create_task(state.run())
    await eventually(lambda: state.generation > 0, what="the state to load the store")
    task.cancel()
    return state


# -- one proxy as the zone CP holds it ---------------------------------------------------------

def encoded(generated: ProxyResources) -> dict[str, dict[str, Entry]]:
    desired: dict[str, dict[str, Entry]] = {t: {} for t in TYPE_URLS.values()}
    for type_url, name, message in entries(generated):
        desired[type_url][name] = encode(message, type_url)
    return desired


def connected(node_id: str, generated: ProxyResources,
              desired: dict[str, dict[str, Entry]]) -> tuple[Engine, ProxyInsight]:
    """The engine of a proxy's stream after Envoy has ACKed everything, and its insight."""
    engine = Engine()
    for type_url, resources in desired.items():
        engine.set_desired(type_url, resources)
    engine.connect(node_id)
    for type_url in TYPE_URLS.values():
        for response in engine.on_request(node_id, Request(type_url=type_url), 0.0):
            engine.on_request(node_id, Request(type_url=type_url,
                                               response_nonce=response.nonce), 0.0)
    return engine, ProxyInsight(node_id, connected=True, generated=generated)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def timed(work: Callable[[], T], into: list[float]) -> T:
    """Run ``work``, appending the CPU time it took (the process's, not the wall clock's:
    on a shared machine waiting for a core is not a cost of the code)."""
    start = time.process_time()
    out = work()
    into.append(time.process_time() - start)
    return out


@dataclass
class Pass:
    """Every proxy once, as the zone CP sees it, holding what it holds per stream."""

    cache: PieceCache = field(default_factory=PieceCache)
    times: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    held: list[tuple[Engine, ProxyInsight]] = field(default_factory=list)
    resources: list[int] = field(default_factory=list)
    first_hits: int = 0  # cache lookups of each proxy's first generation
    first_lookups: int = 0

    def proxy(self, state: MeshState, dp: Resource) -> None:
        t = self.times
        ctx = timed(lambda: state.context_for(dp), t["context_for"])
        hits, misses = self.cache.hits, self.cache.misses
        generated = timed(lambda: generate(ctx, self.cache), t["generate_cold"])
        self.first_hits += self.cache.hits - hits
        self.first_lookups += self.cache.hits - hits + self.cache.misses - misses
        # The same proxy again: every piece it needs is in the cache now.
        timed(lambda: generate(ctx, self.cache), t["generate_warm"])
        timed(lambda: generate(ctx), t["generate_uncached"])
        desired = timed(lambda: encoded(generated), t["encode"])
        self.held.append(connected(f"default.{dp.name}", generated, desired))
        self.resources.append(sum(len(m) for m in generated.by_type().values()))


def memory_traced(state: MeshState, dps: list[Resource], cache: PieceCache) -> float:
    """Python allocations per additional proxy held, with the pieces already cached."""
    contexts = [state.context_for(dp) for dp in dps]
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    held = [connected(f"default.{c.name}", g, encoded(g))
            for c in contexts for g in [generate(c, cache)]]
    gc.collect()
    traced = (tracemalloc.get_traced_memory()[0] - base) / len(held)
    tracemalloc.stop()
    return traced


async def child(n: int, instances: int, outbounds: int, sample: int) -> dict[str, Any]:
    gc.collect()
    before = rss_bytes()
    state = await mesh_state(n, instances, outbounds)
    dps = state.of_kind("Dataplane", "default")
    gc.collect()
    out: dict[str, Any] = {"services": n, "proxies": len(dps),
                           "state_rss_per_dataplane": (rss_bytes() - before) / len(dps)}
    Pass().proxy(state, dps[0])  # first-use costs (caches, descriptor pools) out of the way
    gc.collect()
    run = Pass()
    before = rss_bytes()
    for dp in dps:
        run.proxy(state, dp)
    gc.collect()
    out["rss_per_proxy"] = (rss_bytes() - before) / len(dps)
    out.update({k: statistics.fmean(v) for k, v in run.times.items()})
    out["resources"] = statistics.fmean(run.resources)
    out["cache_hit_rate"] = run.first_hits / max(1, run.first_lookups)
    chosen = dps[::max(1, len(dps) // sample)]
    out["traced_sample"] = len(chosen)
    out["traced_per_proxy"] = memory_traced(state, chosen, run.cache)
    return out


# -- the report --------------------------------------------------------------------------------

def run_child(n: int, a: argparse.Namespace) -> dict[str, Any]:
    argv = [sys.executable, "-m", "tests.bench.bench_config_gen", "--child", str(n),
            "--instances", str(a.instances), "--outbounds", str(a.outbounds),
            "--sample", str(a.sample)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"the run for {n} services failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def report(rows: list[dict[str, Any]]) -> str:
    us = 1e6
    lines = [
        "| services | proxies | resources/proxy | context_for µs | generate, cache µs "
        "(first / again) | generate, no cache µs | no cache / cache (first / again) | "
        "encode µs | cache hits (first) | all proxies after one change, CPU s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        per_change = (r["context_for"] + r["generate_warm"] + r["encode"]) * r["proxies"]
        lines.append(
            f"| {r['services']} | {r['proxies']} | {r['resources']:.0f} | "
            f"{r['context_for'] * us:,.0f} | "
            f"{r['generate_cold'] * us:,.0f} / {r['generate_warm'] * us:,.0f} | "
            f"{r['generate_uncached'] * us:,.0f} | "
            f"{r['generate_uncached'] / r['generate_cold']:.2f} / "
            f"{r['generate_uncached'] / r['generate_warm']:.2f} | {r['encode'] * us:,.0f} | "
            f"{r['cache_hit_rate']:.0%} | {per_change:.1f} |")
    lines += ["", "| services | proxies | RSS KiB/proxy (all held) | "
              "tracemalloc KiB/additional proxy (held again) | MeshState RSS KiB/Dataplane |",
              "|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['services']} | {r['proxies']} | {r['rss_per_proxy'] / 1024:.1f} | "
                     f"{r['traced_per_proxy'] / 1024:.1f} ({r['traced_sample']}) | "
                     f"{r['state_rss_per_dataplane'] / 1024:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("--outbounds", type=int, default=8)
    parser.add_argument("--sample", type=int, default=100,
                        help="proxies held again under tracemalloc (it slows everything)")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    a = parser.parse_args()
    if a.child is not None:
        print(json.dumps(asyncio.run(child(a.child, a.instances, a.outbounds, a.sample))))
        return
    rows = []
    for n in a.services:
        rows.append(run_child(n, a))
        print(f"{n} services done", file=sys.stderr, flush=True)
    print(f"\n{a.instances} Dataplanes per service, {a.outbounds} outbounds each; "
          "times are the process's CPU time, means per proxy\n")
    print(report(rows))


if __name__ == "__main__":
    main()
