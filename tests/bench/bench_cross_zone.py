"""Benchmark: a request across zones against the same request within one zone, and the
transparent proxy's captured path against an explicit outbound, in one run.

Run ``.venv/bin/python -m tests.bench.bench_cross_zone`` as root (it installs ``wrk`` and
``nginx`` from Debian when missing). It brings up a ``deploy.local`` environment of its own (prefix
``bx<pid>-``, so it never touches another run's; always taken down at the end), every
workload on the transparent proxy as ``make demo`` runs it:

- ``backend`` in both zones (``backend-1`` in east, ``backend-2`` in west);
- ``remote`` only in east (``remote-1``): the same demo app, another service name;
- ``web-1`` in west, from whose namespace ``wrk`` runs; its Dataplane also carries an
  explicit outbound for ``remote`` on ``127.0.0.1:--explicit-port`` (default 20001).

Behind the backends' sidecars nginx replaces the demo app unless ``--app demo`` (see
``nginx_apps`` for why).

Three paths, all through web's sidecar:

- ``same zone``: ``http://backend.mesh/``, the lookup and the connection captured by the
  redirect → web's capture listener → mTLS → backend-2's sidecar (west) → app. Without a
  MeshLoadBalancingStrategy a service's local endpoints win, as
  ``tests/e2e/test_failover.py`` shows.
- ``cross zone``: ``http://remote.mesh/``, captured the same way → web's capture listener
  → mTLS through east's zone ingress (SNI passthrough, across the routed WAN) →
  remote-1's sidecar (east) → app.
- ``cross zone, explicit``: ``http://127.0.0.1:<port>/`` (loopback, which the redirect
  lets pass) → web's explicit outbound listener → the same cluster and the same way to
  remote-1: the path without the transparent proxy.

Before measuring, the bench checks with curl that each path is served by the zone it
claims. Each path is warmed up, then measured with the same ``wrk -t1 -c8 -d10s
--latency`` settings, ``--rounds`` times interleaved (each round rotating which path
goes first); the table gives each path's median round (by req/s) and the ratios
cross/same and transparent/explicit (``cross zone`` over ``cross zone, explicit``). A
round with socket errors or non-2xx answers fails the run.
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
from functools import partial
from pathlib import Path

from deploy.local import probes
from deploy.local.app import answer
from deploy.local.environment import Environment
from deploy.local.launch import ExplicitOutbound, Options
from deploy.local.topology import APP_PORT, ENVOY_ADMIN_PORT, Topology, Workload
from proxy.envoy.names import outbound_listener as outbound_listener_name
from proxy.envoy.protos import stat_prefix
from proxy.envoy.transparent import OUTBOUND_LISTENER
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
EXPLICIT_PORT = 20001  # web's explicit outbound for remote, on 127.0.0.1


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


def paths(port: int) -> dict[str, tuple[str, str]]:
    """Each path's URL (from web's namespace) and the zone that must answer it."""
    return {"same zone": ("http://backend.mesh/", "west"),
            "cross zone": ("http://remote.mesh/", "east"),
            "cross zone, explicit": (f"http://127.0.0.1:{port}/", "east")}


# (label, numerator path, denominator path) of each ratio the table ends with.
RATIOS = (("cross / same", "cross zone", "same zone"),
          ("transparent / explicit", "cross zone", "cross zone, explicit"))


def wrk(env: Environment, url: str, args: argparse.Namespace, seconds: int) -> str:
    argv = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{seconds}s",
            "--latency", url]
    return env.run_in(env.topology.workload_ns(CLIENT), argv, timeout=seconds + 60)


def machine() -> str:
    load = Path("/proc/loadavg").read_text().split()[:3]
    return f"nproc {os.cpu_count()}, load average {' '.join(load)}"


def answered_by(env: Environment, url: str, zone: str) -> bool:
    """Whether ten calls in a row of ``url`` from web are all answered from ``zone``."""
    return [probes.call(env, CLIENT, url).zone for _ in range(10)] == [zone] * 10


def check_zones(env: Environment, urls: dict[str, tuple[str, str]], timeout: float) -> None:
    """Until each path's URL is answered by the zone it claims."""
    for path, (url, zone) in urls.items():
        eventually_sync(partial(answered_by, env, url, zone), timeout=timeout,
                        what=f"{path}: {url} served from {zone}")
        print(f"{path}: {url} served from zone {zone}", flush=True)


def listener_connections(env: Environment) -> dict[str, int]:
    """Connections accepted so far by each listener of web's Envoy (admin's left out: the
    reads themselves go there), by stat prefix."""
    ns = env.topology.workload_ns(CLIENT)
    text = probes.admin_get(env, ns, ENVOY_ADMIN_PORT, "/stats?filter=downstream_cx_total")
    found = re.findall(r"^listener\.([^.]+)\.downstream_cx_total: (\d+)$", text, re.M)
    return {name: int(n) for name, n in found if name != "admin"}


def check_listeners(env: Environment, urls: dict[str, tuple[str, str]], port: int) -> None:
    """Each path enters web's Envoy where it claims: a ``.mesh`` name through the capture
    listener, the loopback URL through the explicit outbound's own listener, and no other."""
    for path, (url, _) in urls.items():
        name = (OUTBOUND_LISTENER if url.endswith(".mesh/")
                else outbound_listener_name("127.0.0.1", port))
        before = listener_connections(env)
        if probes.call(env, CLIENT, url).status != 200:
            raise RuntimeError(f"{path}: {url} did not answer 200")
        after = listener_connections(env)
        moved = {k for k, n in after.items() if n != before.get(k, 0)}
        if moved != {stat_prefix(name)}:
            raise RuntimeError(f"{path}: {url} entered web's Envoy through {sorted(moved)}, "
                               f"not {name}")
        print(f"{path}: {url} enters web's Envoy through {name}", flush=True)


def measure(env: Environment, urls: dict[str, tuple[str, str]], args: argparse.Namespace,
            loads: list[str]) -> dict[str, list[Result]]:
    """Warm every path, then ``--rounds`` rounds of each, the order rotated each round so
    no path always runs first (or right after the same one)."""
    for url, _ in urls.values():
        wrk(env, url, args, args.warmup)
    results: dict[str, list[Result]] = {p: [] for p in urls}
    names = list(urls)
    for n in range(args.rounds):
        for path in names[n % len(names):] + names[:n % len(names)]:
            r = parse_wrk(wrk(env, urls[path][0], args, args.seconds))
            results[path].append(r)
            print(f"round {n + 1} {path}: {r.rps:,.0f} req/s, p50 {r.p50_ms:.2f} ms, "
                  f"p99 {r.p99_ms:.2f} ms", flush=True)
        loads.append(machine())
    for path, (url, zone) in urls.items():  # still served where claimed
        got = {probes.call(env, CLIENT, url).zone for _ in range(5)}
        if got != {zone}:
            raise RuntimeError(f"{path}: {url} now served from {got}")
    return results


def report(results: dict[str, list[Result]], args: argparse.Namespace, loads: list[str]
           ) -> None:
    """The median round of each path (by req/s) as a markdown table, then the ratios."""
    median = {p: sorted(rs, key=lambda r: r.rps)[len(rs) // 2] for p, rs in results.items()}
    print()
    print(f"app: {args.app}; wrk -t{args.threads} -c{args.connections} -d{args.seconds}s "
          f"--latency, {args.rounds} rounds, median round by req/s; explicit outbound on "
          f"127.0.0.1:{args.explicit_port}; machine: {loads[0]} (before), "
          + "; ".join(loads[1:]) + " (after each round)")
    print()
    print("| path | req/s | p50 ms | p99 ms | requests |")
    print("|---|---:|---:|---:|---:|")
    for path, r in median.items():
        print(f"| {path} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.requests:,} |")
    for label, top, bottom in RATIOS:
        a, b = median[top], median[bottom]
        print(f"| **{label}** | **{a.rps / b.rps:.2f}** | **{a.p50_ms / b.p50_ms:.2f}** | "
              f"**{a.p99_ms / b.p99_ms:.2f}** | |")
    print()
    for path, rs in results.items():
        print(f"{path}: req/s per round " + ", ".join(f"{r.rps:,.0f}" for r in rs)
              + f" (spread {statistics.pstdev([r.rps for r in rs]):,.0f})")


def explicit_port(text: str) -> int:
    """``--explicit-port``: a port web's sidecar can bind on loopback, or argparse's error."""
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number")
    try:
        return ExplicitOutbound(CLIENT, "remote", int(text)).port
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--explicit-port", type=explicit_port, default=EXPLICIT_PORT,
                        help="web's explicit outbound for remote, on 127.0.0.1")
    parser.add_argument("--app", choices=("nginx", "demo"), default="nginx",
                        help="what answers behind the backends' sidecars (see nginx_apps)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if os.geteuid() != 0:
        sys.exit("this benchmark builds network namespaces and needs root")
    ensure({"wrk": "wrk", **({"nginx": "nginx"} if args.app == "nginx" else {})})
    state = Path(tempfile.mkdtemp(prefix="gossamer-bench-cross-zone-"))
    options = Options(ready_timeout=120.0, outbounds=(
        ExplicitOutbound(CLIENT, "remote", args.explicit_port),))
    env = Environment(TOPOLOGY, state / "env", options)
    urls, loads = paths(args.explicit_port), [machine()]
    try:
        env.up(progress=lambda line: print(line, flush=True))
        if args.app == "nginx":
            nginx_apps(env, state / "nginx")
            print("backends' apps replaced by nginx", flush=True)
        eventually_sync(lambda: "zone: east" in env.gossamer("get", "zoneingresses", "-o", "yaml",
                                                             zone="west"),
                        timeout=120, what="east's ingress known in west")
        check_zones(env, urls, timeout=120)
        check_listeners(env, urls, args.explicit_port)
        results = measure(env, urls, args, loads)
    finally:
        env.down()
        shutil.rmtree(state, ignore_errors=True)
    report(results, args, loads)


if __name__ == "__main__":
    main()
