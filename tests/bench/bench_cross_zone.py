"""Benchmark: a request across zones against the same request within one zone, in one run.

Run ``.venv/bin/python -m tests.bench.bench_cross_zone`` as root (it installs ``wrk`` and
``nginx`` from Debian when missing). It brings up a ``deploy.local`` environment of its own (prefix
``bx<pid>-``, so it never touches another run's; always taken down at the end):

- ``backend`` in both zones (``backend-1`` in east, ``backend-2`` in west);
- ``remote`` only in east (``remote-1``): the same demo app, another service name;
- ``web-1`` in west, from whose namespace ``wrk`` runs.

Behind the backends' sidecars nginx replaces the demo app unless ``--app demo`` (see
``nginx_apps`` for why).

Two paths, both starting at web's sidecar:

- ``same zone``: ``http://backend.mesh/`` → web's sidecar → mTLS → backend-2's sidecar
  (west) → app. Without a MeshLoadBalancingStrategy a service's local endpoints win, as
  ``tests/e2e/test_failover.py`` shows.
- ``cross zone``: ``http://remote.mesh/`` → web's sidecar → mTLS through east's zone
  ingress (SNI passthrough, across the routed WAN) → remote-1's sidecar (east) → app.

Before measuring, the bench checks with curl that each path is served by the zone it
claims. Each path is warmed up, then measured with the same ``wrk -t1 -c8 -d10s
--latency`` settings, ``--rounds`` times interleaved (each round alternating which path
goes first); the table gives each path's median round (by req/s) and the ratio
cross/same. A round with socket errors or non-2xx answers fails the run.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from deploy.local import probes
from deploy.local.app import answer
from deploy.local.environment import Environment
from deploy.local.launch import Options
from deploy.local.topology import APP_PORT, Topology, Workload
from tests.bench.dataplane_paths import NGINX_CONF
from tests.waiting import eventually_sync

PREFIX = f"bx{os.getpid()}-"
TOPOLOGY = Topology(zones=("east", "west"), prefix=PREFIX, workloads=(
    Workload("backend-1", "backend", "east"),
    Workload("remote-1", "remote", "east"),
    Workload("backend-2", "backend", "west"),
    Workload("web-1", "web", "west"),
))
CLIENT = "web-1"
PATHS = {"same zone": ("backend", "west"), "cross zone": ("remote", "east")}


@dataclass(frozen=True)
class Result:
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * _UNITS[unit]


def parse_wrk(out: str) -> Result:
    if "Socket errors" in out or "Non-2xx" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))
    requests = int(re.search(r"^\s+(\d+) requests in", out, re.M).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M).group(1))  # type: ignore[union-attr]
    return Result(requests, rps, _ms(latency["50"]), _ms(latency["99"]))


def ensure(packages: dict[str, str]) -> None:
    """Install the Debian packages (name -> executable) whose executable is missing."""
    missing = [pkg for pkg, exe in packages.items()
               if shutil.which(exe) is None and not Path("/usr/sbin", exe).exists()]
    if missing:
        print(f"installing {' '.join(missing)} with apt-get", flush=True)
        subprocess.run(["apt-get", "install", "-y", *missing], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def nginx_apps(env: Environment, work: Path) -> None:
    """Replace every backend's demo app by nginx answering the same line on the same port.

    The demo app (``deploy.local.app``, Python's ``http.server``) writes the headers and
    the body of each answer in two sends without TCP_NODELAY, so every request on a kept
    connection waits out the sidecar's delayed ACK (about 40 ms): with it, both paths
    measure that wait and nothing of the mesh. nginx (one worker, no access log) is
    started by the environment's supervisor under the app's name, in the app's namespace,
    so ``down`` stops it like any app."""
    for w in env.topology.workloads:
        if w.name == CLIENT:
            continue
        name = f"{w.name}-app"
        env.stop(name)
        d = work / w.name
        (d / "logs").mkdir(parents=True)
        body = answer(w.service, w.name, w.zone).strip()
        (d / "nginx.conf").write_text(NGINX_CONF.format(dir=d, port=APP_PORT, body=body))
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        env.commands[name] = replace(env.commands[name],
                                     argv=(nginx, "-p", str(d), "-c", str(d / "nginx.conf")))
        env.start(name)


def wrk(env: Environment, service: str, seconds: int, threads: int, connections: int
        ) -> str:
    ns = env.topology.workload_ns(CLIENT)
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency",
            f"http://{service}.mesh/"]
    return env.run_in(ns, argv, timeout=seconds + 60)


def machine() -> str:
    load = Path("/proc/loadavg").read_text().split()[:3]
    return f"nproc {os.cpu_count()}, load average {' '.join(load)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--app", choices=("nginx", "demo"), default="nginx",
                        help="what answers behind the backends' sidecars (see nginx_apps)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("this benchmark builds network namespaces and needs root")
    ensure({"wrk": "wrk", **({"nginx": "nginx"} if args.app == "nginx" else {})})
    state = Path(tempfile.mkdtemp(prefix="gossamer-bench-cross-zone-"))
    env = Environment(TOPOLOGY, state / "env", Options(ready_timeout=120.0))
    loads = [machine()]
    try:
        env.up(progress=lambda line: print(line, flush=True))
        if args.app == "nginx":
            nginx_apps(env, state / "nginx")
            print("backends' apps replaced by nginx", flush=True)
        eventually_sync(lambda: "zone: east" in env.gossamer("get", "zoneingresses", "-o", "yaml",
                                                        zone="west"),
                   timeout=120, what="east's ingress known in west")
        for path, (service, zone) in PATHS.items():
            eventually_sync(lambda s=service, z=zone: [probes.call(env, CLIENT, f"http://{s}.mesh/")
                                                  .zone for _ in range(10)] == [z] * 10,
                       timeout=120, what=f"{path}: {service}.mesh served from {zone}")
            print(f"{path}: {service}.mesh served from zone {zone}", flush=True)
        for service, _ in PATHS.values():
            wrk(env, service, args.warmup, args.threads, args.connections)
        results: dict[str, list[Result]] = {p: [] for p in PATHS}
        for n in range(args.rounds):
            order = list(PATHS) if n % 2 == 0 else list(reversed(PATHS))
            for path in order:
                service, _ = PATHS[path]
                r = parse_wrk(wrk(env, service, args.seconds, args.threads, args.connections))
                results[path].append(r)
                print(f"round {n + 1} {path}: {r.rps:,.0f} req/s, p50 {r.p50_ms:.2f} ms, "
                      f"p99 {r.p99_ms:.2f} ms", flush=True)
            loads.append(machine())
        for path, (service, zone) in PATHS.items():  # still served where claimed
            got = {probes.call(env, CLIENT, f"http://{service}.mesh/").zone for _ in range(5)}
            if got != {zone}:
                raise RuntimeError(f"{path}: {service}.mesh now served from {got}")
    finally:
        env.down()
        shutil.rmtree(state, ignore_errors=True)

    median = {p: sorted(rs, key=lambda r: r.rps)[len(rs) // 2] for p, rs in results.items()}
    same, cross = median["same zone"], median["cross zone"]
    print()
    print(f"app: {args.app}; wrk -t{args.threads} -c{args.connections} -d{args.seconds}s "
          f"--latency, {args.rounds} rounds, median round by req/s; machine: {loads[0]} (before), "
          + "; ".join(loads[1:]) + " (after each round)")
    print()
    print("| path | req/s | p50 ms | p99 ms | requests |")
    print("|---|---:|---:|---:|---:|")
    for path, r in median.items():
        print(f"| {path} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.requests:,} |")
    print(f"| **cross / same** | **{cross.rps / same.rps:.2f}** | "
          f"**{cross.p50_ms / same.p50_ms:.2f}** | **{cross.p99_ms / same.p99_ms:.2f}** | |")
    print()
    for path, rs in results.items():
        print(f"{path}: req/s per round " + ", ".join(f"{r.rps:,.0f}" for r in rs)
              + f" (spread {statistics.pstdev([r.rps for r in rs]):,.0f})")


if __name__ == "__main__":
    main()
