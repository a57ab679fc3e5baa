"""Benchmark: a batch of thousands of policies applied with proxies connected (issue 18).

Run ``.venv/bin/python -m tests.bench.bench_policies`` (``--sizes 1000 5000 20000
--proxies 100 --paths zone global --updates 5 [--json]``). For each path and size it
starts fresh control planes with the ``gossamer`` CLI (SQLite, ``tests.bench.fleet``),
once with ``--proxies`` simulated sidecars connected (the fleet simulator's worker: real
agent Sessions, CSRs and delta ADS streams) and once with none, the reference in the
same run. It applies ``size`` policies (``tests.bench.policy_batch``: a MeshTrafficPermission
per service pair, a MeshTimeout and a MeshRetry per service, four mesh-wide) with
``POST /_apply`` in chunks of 5,000 documents (the API takes at most 10,000 per request
and 8 MiB of body; a chunk is ~1.3 MiB), and measures:

- **apply**: from the first chunk sent until the last answered;
- **acked**: until every proxy ACKed the batch's markers (a connect timeout only this
  batch carries, in its last chunk); with no proxy: until the zone's store holds the
  batch (the same as apply at the zone; the sync's time from the global);
- **cpu**: CPU seconds of the zone CP (and of the global on that path) from the first
  chunk until the process is idle again (``policy_batch.settle``);
- **latency**: ``/healthz`` and ``GET /meshes/default`` of the zone CP, each polled every
  20 ms from a thread of their own until the zone CP is idle again: p50, p99, max.

Each proxied number is reported as a ratio to the same batch with no proxy. Then, with
the proxies still connected after the batch at the smallest and the largest size, the
per-change cost of one policy update (a service's MeshTimeout with a new connect timeout,
``--updates`` times): the time until that service's proxies ACKed it and the zone CP's
CPU until idle. ``--json`` prints every number as one JSON object last. ``--stall-trace DIR`` has
the started control planes log every turn of their loop over 50 ms, with stack samples
(``tests.bench.stall_trace``); ``--switch-interval S`` sets their GIL switch interval;
``--cp-tree DIR`` runs the control planes from another source tree (an A/B of two
commits on the same machine).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tests.bench.bench_fleet import layout
from tests.bench.fleet import stats
from tests.bench.fleet.link import WorkerLink
from tests.bench.fleet.processes import ControlPlane, Fleet
from tests.bench.policy_batch import (
    Poller,
    batch,
    chunks,
    cpu_seconds,
    dataplane_token,
    service,
    services_for,
    settle,
    standalone,
    stored_policies,
    timeout_of,
)

PROXIED = 20  # services the sidecars serve (5 each at 100 proxies)
MARKER = 50_000
DEADLINE = 1800.0
GET = "/meshes/default"


class Case:
    """Fresh control planes for one measurement: a standalone zone (``zone`` path) or a
    global with one zone joined (``global`` path), and the sidecars' worker."""

    def __init__(self, root: Path, path: str, cp_tree: Path | None = None) -> None:
        root.mkdir(parents=True)
        self.fleet = Fleet(root, cp_tree)
        self.path = path
        if path == "zone":
            self.zone = standalone(self.fleet)
            self.target: ControlPlane = self.zone
        else:
            self.target = self.fleet.start_global()
            self.zone = self.fleet.start_zones(["zone-0"])[0]
        self.link: WorkerLink | None = None

    async def connect(self, proxies: int) -> None:
        per_service = -(-proxies // PROXIED) + 1
        tokens = {service(s): dataplane_token(self.target, service(s), per_service)
                  for s in range(PROXIED)}
        config = {"mesh": "default", "xds": self.zone.xds, "tokens": tokens,
                  "zone": self.zone.name, "root": str(self.fleet.root),
                  "ca_file": str(self.zone.data_dir / "tls" / "ca.pem"),
                  "specs": layout(0, self.zone.name, proxies, PROXIED)}
        self.link = await WorkerLink.start(self.zone.name, config, self.fleet.root)
        self.fleet.workers.append(self.link.proc.pid)
        await self.link.wait("ready", "", DEADLINE)

    async def watch(self, watch_id: str, svc: str | None, ms: int) -> None:
        assert self.link is not None
        await self.link.send({"cmd": "watch", "id": watch_id, "kind": "timeout",
                              "service": svc, "ms": ms})
        await self.link.wait("armed", watch_id, DEADLINE)

    async def done(self, watch_id: str) -> float:
        assert self.link is not None
        return float((await self.link.wait("done", watch_id, DEADLINE))["last"])

    async def stop(self) -> None:
        if self.link is not None:
            await self.link.stop()
        self.fleet.stop()


def latency(samples: list[float]) -> dict[str, float]:
    s = stats.summary_ms(samples)
    return {"p50_ms": s["p50_ms"], "p99_ms": s["p99_ms"], "max_ms": s["max_ms"]}


async def apply_batch(case: Case, size: int, proxies: int) -> dict[str, Any]:
    docs = batch(size, PROXIED, MARKER)
    markers = [(None, MARKER)] + [(service(i), MARKER + 1 + i)
                                  for i in range(min(PROXIED, services_for(size)))]
    if proxies:
        for k, (svc, ms) in enumerate(markers):
            await case.watch(f"m{k}", svc, ms)
    before = stored_policies(case.zone)
    pids = {"zone": case.zone.proc.pid, "global": case.target.proc.pid}
    cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
    pollers = [Poller(case.zone, ("/healthz", GET)).start()]
    t0 = time.monotonic()
    async with httpx.AsyncClient(timeout=DEADLINE, headers=case.target.headers) as http:
        for chunk in chunks(docs):
            r = await http.post(f"{case.target.api}/_apply", json={"documents": chunk})
            if r.status_code != 200:
                raise RuntimeError(f"POST /_apply: {r.status_code} {r.text[:500]}")
    t_applied = time.monotonic()
    if proxies:
        t_acked = max([await case.done(f"m{k}") for k in range(len(markers))])
    else:
        t_acked = await asyncio.to_thread(stored_at, case.zone, before + size)
    t_idle = max(await asyncio.gather(*(asyncio.to_thread(settle, p)
                                        for p in set(pids.values()))))
    lat = pollers[0].stop()
    result = {"apply_s": round(t_applied - t0, 2), "acked_s": round(t_acked - t0, 2),
              "idle_s": round(t_idle - t0, 2),
              "zone_cpu_s": round(cpu_seconds(pids["zone"]) - cpu0["zone"], 2),
              "healthz": latency(lat.get("/healthz", [])), "get": latency(lat.get(GET, [])),
              "poll_failures": len(pollers[0].failures)}
    if case.path == "global":
        result["global_cpu_s"] = round(cpu_seconds(pids["global"]) - cpu0["global"], 2)
    return result


def stored_at(zone: ControlPlane, count: int) -> float:
    """The monotonic time ``zone``'s store first holds ``count`` policies (5 ms polls)."""
    until = time.monotonic() + DEADLINE
    while time.monotonic() < until:
        if stored_policies(zone) >= count:
            return time.monotonic()
        time.sleep(0.005)
    raise RuntimeError(f"{zone.name}: {count} policies not stored after {DEADLINE}s")


async def updates(case: Case, size: int, count: int) -> dict[str, Any]:
    """``count`` single-policy updates, each timed until its service's proxies ACKed it."""
    acked, cpu = [], []
    services = services_for(size)
    async with httpx.AsyncClient(timeout=DEADLINE, headers=case.target.headers) as http:
        for k in range(count):
            i = k % min(PROXIED, services)
            ms = MARKER + 1_000 + k
            doc = timeout_of(i, services, PROXIED, ms)
            await case.watch(f"u{k}", service(i), ms)
            await asyncio.to_thread(settle, case.zone.proc.pid)
            cpu0, t0 = cpu_seconds(case.zone.proc.pid), time.monotonic()
            r = await http.put(f"{case.target.api}/meshes/default/meshtimeouts/{doc['name']}",
                               json=doc)
            r.raise_for_status()
            acked.append(await case.done(f"u{k}") - t0)
            await asyncio.to_thread(settle, case.zone.proc.pid)
            cpu.append(cpu_seconds(case.zone.proc.pid) - cpu0)
    return {"policies": size, "acked_ms": stats.summary_ms(acked),
            "zone_cpu_ms": round(1000 * sorted(cpu)[len(cpu) // 2], 1)}


async def run_case(root: Path, path: str, size: int, proxies: int, n_updates: int,
                   cp_tree: Path | None = None) -> dict[str, Any]:
    case = await asyncio.to_thread(Case, root, path, cp_tree)
    try:
        if proxies:
            await case.connect(proxies)
        result = await apply_batch(case, size, proxies)
        if proxies and n_updates:
            result["update"] = await updates(case, size, n_updates)
        return result
    finally:
        await case.stop()


def ratio(a: float, b: float) -> float:
    return round(a / b, 2) if b > 0 else float("nan")


def row(path: str, size: int, proxies: int, r: dict[str, Any]) -> str:
    h, g = r["healthz"], r["get"]
    return (f"{path:6s} {size:6d} {proxies:4d} {r['apply_s']:8.2f} {r['acked_s']:8.2f}"
            f" {r['zone_cpu_s']:8.2f} {h['p50_ms']:6.1f} {h['p99_ms']:7.1f} {h['max_ms']:7.1f}"
            f" {g['p50_ms']:6.1f} {g['p99_ms']:7.1f} {g['max_ms']:7.1f}")


def ratios(bare: dict[str, Any], proxied: dict[str, Any]) -> dict[str, float]:
    """Proxied over no-proxy; ``acked`` over the no-proxy batch's own end."""
    return {"apply": ratio(proxied["apply_s"], bare["apply_s"]),
            "acked": ratio(proxied["acked_s"], bare["acked_s"]),
            "zone_cpu": ratio(proxied["zone_cpu_s"], bare["zone_cpu_s"]),
            "healthz_p99": ratio(proxied["healthz"]["p99_ms"], bare["healthz"]["p99_ms"]),
            "get_p99": ratio(proxied["get"]["p99_ms"], bare["get"]["p99_ms"])}


async def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"proxies": args.proxies, "load_average": os.getloadavg(),
                           "batches": []}
    print(f"{'path':6s} {'size':>6s} {'prox':>4s} {'apply s':>8s} {'acked s':>8s}"
          f" {'cpu s':>8s} {'hz p50':>6s} {'hz p99':>7s} {'hz max':>7s} {'get50':>6s}"
          f" {'get99':>7s} {'getmax':>7s}")
    for path in args.paths:
        for size in args.sizes:
            found = {}
            for proxies in (0, args.proxies):
                name = f"{path}-{size}-{proxies}"
                found[proxies] = r = await run_case(root / name, path, size, proxies,
                                                    args.updates, args.cp_tree)
                print(row(path, size, proxies, r), flush=True)
            entry = {"path": path, "size": size, "no_proxy": found[0],
                     "proxied": found[args.proxies],
                     "ratio": ratios(found[0], found[args.proxies])}
            print(f"  ratios {json.dumps(entry['ratio'])}", flush=True)
            out["batches"].append(entry)
    out["updates"] = [{"path": b["path"], **b["proxied"]["update"]} for b in out["batches"]
                      if "update" in b["proxied"]]
    if args.updates and 100 not in args.sizes:  # the reference: one update among 100
        r = await run_case(root / "zone-100-ref", "zone", 100, args.proxies, args.updates)
        out["updates"].insert(0, {"path": "zone", **r["update"]})
    for u in out["updates"]:
        print(f"update {u['path']:6s} among {u['policies']:6d} policies: acked p50 "
              f"{u['acked_ms']['p50_ms']} ms max {u['acked_ms']['max_ms']} ms, "
              f"zone CPU {u['zone_cpu_ms']} ms")
    out["load_average_end"] = os.getloadavg()
    return out


def hook_processes() -> None:
    """Have every process started from now on load ``tests/bench/stall_hook`` (inherited
    environment: it goes first on ``PYTHONPATH``), which reads the ``GOSSAMER_STALL_TRACE``
    and ``GOSSAMER_SWITCH_INTERVAL`` variables."""
    tree = Path(__file__).resolve().parents[2]
    paths = [str(tree / "tests" / "bench" / "stall_hook"), str(tree)]
    if os.environ.get("PYTHONPATH"):
        paths.append(os.environ["PYTHONPATH"])
    os.environ["PYTHONPATH"] = os.pathsep.join(paths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 20000])
    parser.add_argument("--proxies", type=int, default=100)
    parser.add_argument("--paths", nargs="+", choices=["zone", "global"],
                        default=["zone", "global"])
    parser.add_argument("--updates", type=int, default=5,
                        help="single-policy updates timed after each proxied batch")
    parser.add_argument("--json", action="store_true", help="print the result as JSON last")
    parser.add_argument("--keep", action="store_true", help="keep the data and logs")
    parser.add_argument("--stall-trace", type=Path, metavar="DIR",
                        help="trace the started processes' event-loop stalls into DIR "
                             "(tests.bench.stall_trace; report with `python -m "
                             "tests.bench.stall_trace DIR`)")
    parser.add_argument("--cp-tree", type=Path, metavar="DIR",
                        help="run the control planes from this source tree (e.g. `git "
                             "archive` of another commit), to compare two versions")
    parser.add_argument("--switch-interval", type=float, metavar="S",
                        help="the started processes' GIL switch interval (seconds; "
                             "Python's default is 0.005)")
    args = parser.parse_args()
    if args.stall_trace is not None or args.switch_interval is not None:
        hook_processes()
    if args.stall_trace is not None:
        os.environ["GOSSAMER_STALL_TRACE"] = str(args.stall_trace.resolve())
    if args.switch_interval is not None:
        os.environ["GOSSAMER_SWITCH_INTERVAL"] = str(args.switch_interval)
    if args.proxies < PROXIED or any(s < 10 for s in args.sizes):
        parser.error(f"--proxies must be at least {PROXIED} and every size at least 10")
    root = Path(tempfile.mkdtemp(prefix="bench-policies-"))
    try:
        result = asyncio.run(run(args, root))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except (RuntimeError, OSError, httpx.HTTPError) as exc:
        print(f"error: {exc} (logs in {root}, kept)", file=sys.stderr)
        raise SystemExit(1) from None
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
