"""Benchmark: how long a change applied at the global takes to be ACKed by every affected
Envoy of a fleet, with zone CPs as separate processes and simulated sidecars.

Run ``.venv/bin/python -m tests.bench.bench_fleet`` (``--zones 2 --proxies 20 --services
10 --changes 5 [--burst 100] [--json]``). It starts a global CP and ``--zones`` zone CPs
with the real ``gossamer`` CLI (SQLite stores in a temporary directory, zones joined with
zone tokens; ``tests.bench.fleet.processes``), and per zone a worker process holding
``--proxies`` simulated sidecars (``tests.bench.fleet.worker``): each registers through
the real agent API with a real dataplane token and CSR and follows a real delta ADS stream
as Envoy does, ACKing every response. Each sidecar opens two TLS connections of its own
(its agent's, its Envoy's), as a real one does; ``--per-channel N`` makes N sidecars
share one instead (the old simulator: its memory per sidecar leaves the connections
out). The benchmark raises its open-file limit to what that takes (two per sidecar, in
the zone CP and in the worker alike) and says so when the hard limit is too low.

The mesh (the same in every zone, local traffic only: no zone ingresses): ``--services``
services, proxy i of a zone serving ``svc-(i mod S)`` with explicit outbounds to the next
four services (every fifth service TCP, the others HTTP), like ``bench_config_gen``'s;
the sidecars opt out of VIP listeners, so a service's callers are the proxies with it
among their outbounds. The changes and their timing are in ``tests.bench.fleet.changes``;
the reference in the same run is the time until each zone's own API shows the change.

Also measured: the zone CPs' resident memory before and after the sidecars connect (per
proxy), and their event-loop lag during the changes (``gossamer_event_loop_lag_seconds``
from their /metrics, p99 over every zone). With ``--json`` the last line is the issue's
JSON object. Every child process ends with the benchmark, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from gossamer.loop_lag import METRIC as LOOP_LAG
from tests.bench.fleet import memtrace, stats
from tests.bench.fleet.changes import Runner, Samples, timeout_doc
from tests.bench.fleet.link import WorkerLink
from tests.bench.fleet.processes import ControlPlane, Fleet, fds_needed, raise_nofile

OUTBOUNDS = 4
REAL_WORKER = "tests.bench.fleet.real_worker"


def service(i: int) -> str:
    return f"svc-{i:04d}"


def layout(zone_index: int, zone: str, proxies: int, services: int) -> list[dict[str, Any]]:
    """The sidecars of one zone (``sidecar.Spec`` fields)."""
    specs = []
    for i in range(proxies):
        s = i % services
        k = i + 1
        specs.append({"name": f"{zone}-p{i}", "service": service(s),
                      "address": f"10.{zone_index + 1}.{k >> 8 & 255}.{k & 255}",
                      "protocol": "tcp" if s % 5 == 4 else "http",
                      "outbounds": [service((s + j) % services)
                                    for j in range(1, min(OUTBOUNDS, services - 1) + 1)]})
    return specs


async def scrape(http: httpx.AsyncClient, zones: list[ControlPlane]) -> list[stats.Buckets]:
    answers = await asyncio.gather(*(http.get(f"{z.api}/metrics") for z in zones))
    return [stats.histogram(r.text, LOOP_LAG) for r in answers]


def lag_p99_ms(before: list[stats.Buckets], after: list[stats.Buckets]) -> float:
    window = stats.added(*(stats.between(b, a) for b, a in zip(before, after, strict=True)))
    return round(stats.quantile(window, 0.99) * 1000, 1)


async def connect(fleet: Fleet, args: argparse.Namespace, services: int,
                  runner: Runner) -> None:
    """Tokens, one worker per zone, every sidecar connected and synced."""
    per_service = -(-args.proxies // services) + 2  # one extra sidecar, and slack
    tokens = {service(s): fleet.dataplane_token(service(s), per_service)
              for s in range(services)}
    links = runner.links
    for i, zone in enumerate(fleet.zones):
        config = {"mesh": "default", "xds": zone.xds, "tokens": tokens, "zone": zone.name,
                  "ca_file": str(zone.data_dir / "tls" / "ca.pem"), "root": str(fleet.root),
                  "specs": layout(i, zone.name, args.proxies, services),
                  "per_channel": args.per_channel}
        real = args.real_envoy and i == 0
        links.append(await WorkerLink.start(zone.name, config, fleet.root, REAL_WORKER
                                            if real else "tests.bench.fleet.worker"))
        fleet.workers.append(links[-1].proc.pid)
    readies = await asyncio.gather(*(link.wait("ready", "", None) for link in links))
    slowest = max(r["seconds"] for r in readies)
    print(f"connected {sum(r['connected'] for r in readies)} sidecars in {slowest:.1f} s")


def line(kind: str, s: Samples) -> str:
    def ms(values: list[float], q: float) -> str:
        return f"{stats.percentile(values, q) * 1000:8.1f}"
    ratio = stats.percentile(s.all_zones, 50) / max(stats.percentile(s.reference, 50), 1e-9)
    return (f"{kind:20s} {len(s.all_zones):4d} {sum(s.affected) / max(1, len(s.affected)):8.0f}"
            f" {ms(s.all_zones, 50)} {ms(s.all_zones, 99)} {ms(s.per_zone, 99)}"
            f" {ms(s.reference, 50)} {ms(s.reference, 99)} {ratio:6.1f} {s.missed:3d}")


def by_zone(runner: Runner) -> None:
    """p50 and p99 of each change kind in each zone (real Envoys against simulated ones)."""
    for kind, samples in runner.samples.items():
        for zone, values in samples.by_zone.items():
            s = stats.summary_ms(values)
            print(f"  {kind:20s} {zone:10s} p50 {s['p50_ms']:8.1f} ms  p99 {s['p99_ms']:8.1f} ms"
                  f"  n {s['n']}")


def cpu_per_proxy_ms(samples: Samples) -> dict[str, float]:
    """The CPU each kind of process used per change, over the proxies it affected, ms."""
    affected = max(1, sum(samples.affected))
    return {k: round(sum(c[k] for c in samples.cpu) * 1000 / affected, 3)
            for k in samples.cpu[0]}


def report(runner: Runner, result: dict[str, Any]) -> None:
    print(f"{'change':20s} {'n':>4s} {'affected':>8s} {'p50 ms':>8s} {'p99 ms':>8s}"
          f" {'zone p99':>8s} {'ref p50':>8s} {'ref p99':>8s} {'p50/ref':>6s} miss")
    for kind, samples in runner.samples.items():
        print(line(kind, samples))
        if kind in ("one_service", "mesh_wide", "endpoint"):
            result[kind] = {k: v for k, v in stats.summary_ms(samples.all_zones).items()
                            if k in ("p50_ms", "p99_ms")}
            ref = stats.summary_ms(samples.reference)
            result[kind]["reference_p99_ms"] = ref["p99_ms"]
            result[kind]["ratio_p99"] = round(result[kind]["p99_ms"] / max(ref["p99_ms"], 0.1), 1)
            result[kind]["missed"] = samples.missed
        if samples.cpu:
            per = cpu_per_proxy_ms(samples)
            result.setdefault(kind, {})["cpu_ms_per_affected_proxy"] = per
            print(f"  {kind}: CPU per affected proxy, ms: "
                  + ", ".join(f"{k} {v}" for k, v in per.items()))


async def run(args: argparse.Namespace, fleet: Fleet) -> dict[str, Any]:
    services = min(args.services, args.proxies)
    global_cp = fleet.start_global()
    zones = fleet.start_zones([f"zone-{i}" for i in range(args.zones)])
    print(f"global and {len(zones)} zones up ({fleet.root})")
    async with httpx.AsyncClient(timeout=30) as http:
        runner = Runner(global_cp, zones, [], [service(s) for s in range(services)], http)
        runner.mesh_ms = 10_000  # the mesh-wide value before any change
        await runner.put(timeout_doc("fleet-mesh", runner.mesh_ms, None))
        if fleet.trace_memory is not None:
            for z in zones:
                z.proc.send_signal(signal.SIGUSR1)  # tracemalloc from here on
        rss_before = [stats.rss_kib(z.proc.pid) for z in zones]
        started = time.monotonic()
        try:
            await connect(fleet, args, services, runner)
            if fleet.trace_memory is not None:
                for z in zones:
                    path = await asyncio.to_thread(fleet.snapshot, z)
                    print("\n".join(memtrace.breakdown(path, args.proxies)))
            return await measure(args, runner, http, rss_before, started)
        finally:
            for link in runner.links:
                await link.stop()


async def measure(args: argparse.Namespace, runner: Runner, http: httpx.AsyncClient,
                  rss_before: list[int], started: float) -> dict[str, Any]:
    """The changes, the burst, memory and loop lag, with every sidecar connected."""
    zones = runner.zones
    rss_after = [stats.rss_kib(z.proc.pid) for z in zones]
    lag_start = await scrape(http, zones)
    for k in range(args.changes):
        await runner.one_service(k)
        await runner.mesh_wide()
        await runner.endpoint(k)
    result: dict[str, Any] = {"zones": args.zones, "proxies_per_zone": args.proxies}
    report(runner, result)
    if args.real_envoy:
        by_zone(runner)
    lag_end = await scrape(http, zones)
    if args.burst:
        try:
            result["burst"] = await runner.burst(args.burst)
        except (httpx.HTTPError, RuntimeError) as exc:  # the rest of the result stands
            result["burst"] = {"error": f"{type(exc).__name__}: {exc}"}
        print("burst:", json.dumps(result["burst"]))
    total = args.zones * args.proxies
    result["zone_cp_rss_kib_per_proxy"] = round(
        (sum(rss_after) - sum(rss_before)) / total, 1)
    result["loop_lag_p99_ms"] = lag_p99_ms(lag_start, lag_end)
    result["services"] = len(runner.services)
    result["zone_cp_rss_mib"] = round(max(rss_after) / 1024, 1)
    print(f"zone CP RSS {max(rss_before) / 1024:.0f} -> {max(rss_after) / 1024:.0f} MiB "
          f"(largest zone); {result['zone_cp_rss_kib_per_proxy']} KiB per proxy; "
          f"loop lag p99 during the changes {result['loop_lag_p99_ms']} ms; "
          f"total {time.monotonic() - started:.0f} s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zones", type=int, default=2)
    parser.add_argument("--proxies", type=int, default=20, help="simulated sidecars per zone")
    parser.add_argument("--services", type=int, default=10)
    parser.add_argument("--changes", type=int, default=5, help="changes of each kind")
    parser.add_argument("--burst", type=int, default=0, metavar="N",
                        help="then N mesh-wide changes in 1 s")
    parser.add_argument("--per-channel", type=int, metavar="N",
                        help="N sidecars share one connection (default: two connections "
                             "per sidecar, as real sidecars open)")
    parser.add_argument("--trace-memory", type=Path, metavar="DIR",
                        help="trace the zone CPs' Python allocations (tracemalloc) from "
                             "before the sidecars connect, and print where they went per "
                             "sidecar once connected (snapshots kept in DIR; slows them)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON last")
    parser.add_argument("--keep", action="store_true", help="keep the data and logs")
    parser.add_argument("--real-envoy", action="store_true",
                        help="the first zone's sidecars are real (gossamer proxy run and "
                             "Envoy), the others simulated: compare them zone by zone")
    parser.add_argument("--cp-tree", type=Path, metavar="DIR",
                        help="run the control planes from this source tree (e.g. `git "
                             "archive` of another commit) instead of the installed code")
    args = parser.parse_args()
    for flag in ("zones", "proxies", "services"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag} must be at least 1")
    if args.per_channel is not None and args.per_channel < 1:
        parser.error("--per-channel must be at least 1")
    try:  # the zone CPs and the workers inherit it
        raise_nofile(fds_needed(args.proxies + 1, args.per_channel))
    except RuntimeError as exc:
        parser.error(str(exc))
    root = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    if args.cp_tree is not None and not (args.cp_tree / "cli" / "main.py").is_file():
        parser.error(f"--cp-tree {args.cp_tree}: no cli/main.py there")
    fleet = Fleet(root, args.cp_tree.resolve() if args.cp_tree else None,
                  args.trace_memory.resolve() if args.trace_memory else None)
    if args.trace_memory is not None:
        args.trace_memory.mkdir(parents=True, exist_ok=True)
    try:
        result = asyncio.run(run(args, fleet))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except (RuntimeError, OSError, httpx.HTTPError) as exc:
        print(f"error: {type(exc).__name__}: {exc} (logs in {root}, kept)", file=sys.stderr)
        args.keep = True
        raise SystemExit(1) from None
    finally:
        fleet.stop()
        if not args.keep:
            import shutil
            shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps({k: (None if isinstance(v, float) and math.isnan(v) else v)
                          for k, v in result.items()}))


if __name__ == "__main__":
    main()
