"""Benchmark: queries per second of our ``.mesh`` resolver against dnsmasq, with dnsperf.

Run ``.venv/bin/python -m tests.bench.bench_dns``. Two sets of names, each measured
on both servers with the same query file from dnsperf:

- ``mesh``: both servers hold the same ``--names`` names (``svc-NNNN.mesh``, one VIP
  each; dnsmasq through ``--host-record``, authoritative for ``mesh`` through
  ``--local=/mesh/``); A queries for every name, plus AAAA queries (empty NOERROR) and
  names that do not exist (NXDOMAIN), shuffled.
- ``forwarded``: A queries for ``--names`` names ``fwd-NNNN.example`` that both servers
  forward to a third process, a dnsmasq authoritative for ``example`` (TTL 3600), and
  cache: each server is first sent the whole file twice (not measured), so the rate
  is that of cached forwarded answers. Ours is also measured at a fixed offered rate
  (``--rate``), where the CPU per query of the two sets compares without the noise
  of the rate itself. Our cache holds 1,024 answers by default, so
  ``--names`` above about 1,000 measures misses too.

Each server runs as its own process on 127.0.0.1 and is measured for ``--seconds`` per
round over UDP. ``--tcp`` adds our server over TCP,
without a reference: dnsmasq serves TCP from a forked child per connection and managed
1 to 100 queries/s under dnsperf's TCP mode here, so a ratio would say nothing. Rounds
alternate between the two servers and the best round of each is kept, which lowers
the noise of a shared machine. The table prints queries per second and the server's CPU
time per answered query (from /proc, less sensitive than the rate to other load on
the machine), each with its ratio to dnsmasq's (the reference, measured in the same
run), and dnsperf's mean latency, sent and lost queries. Installs dnsperf and dnsmasq
with apt-get when they are missing and we run as root.

``--serve PORT`` is the child mode that runs our server for the benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path

from dns.server import DnsServer, ServerConfig
from dns.table import DnsTable


@dataclass(frozen=True)
class Run:
    server: str
    mode: str
    qps: float
    latency_ms: float
    sent: int
    lost: int
    cpu_us: float = 0.0  # the server's CPU time (user + system) per answered query
    names: str = "mesh"  # which set of names: mesh, or forwarded (cached)


def names(count: int) -> dict[str, str]:
    return {f"svc-{i:04d}.mesh": f"240.0.{i // 250}.{i % 250 + 1}" for i in range(count)}


def forwarded_names(count: int) -> dict[str, str]:
    return {f"fwd-{i:04d}.example": f"10.1.{i // 250}.{i % 250 + 1}" for i in range(count)}


def query_file(path: Path, table: dict[str, str]) -> None:
    lines = [f"{name} A" for name in table]
    lines += [f"{name} AAAA" for name in list(table)[: len(table) // 5]]
    lines += [f"missing-{i:04d}.mesh A" for i in range(len(table) // 5)]
    random.Random(7).shuffle(lines)
    path.write_text("\n".join(lines) + "\n")


def forwarded_query_file(path: Path, table: dict[str, str]) -> None:
    lines = [f"{name} A" for name in table]
    random.Random(7).shuffle(lines)
    path.write_text("\n".join(lines) + "\n")


def ensure_tools() -> None:
    missing = [pkg for tool, pkg in [("dnsperf", "dnsperf"), ("dnsmasq", "dnsmasq")]
               if shutil.which(tool) is None]  # fmt: skip
    if not missing:
        return
    if os.geteuid() != 0:
        sys.exit(f"missing {', '.join(missing)}: install the Debian packages (needs root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=True)
        subprocess.run(install, env=env, capture_output=True, check=True)


def free_port() -> int:
    # Both servers bind UDP and TCP on this port; the kernel's pick for port 0 over TCP
    # is good enough on an otherwise idle loopback.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def ours(port: int, count: int, upstream: int) -> Iterator[subprocess.Popen[bytes]]:
    cmd = [sys.executable, "-m", "tests.bench.bench_dns", "--serve", str(port),
           "--names", str(count), "--upstream", str(upstream)]  # fmt: skip
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None
        if process.stdout.readline().strip() != b"ready":
            raise RuntimeError("our server did not start")
        yield process
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(10)


def reference_conf(table: dict[str, str], upstream: int) -> list[str]:
    """dnsmasq as the reference: our table, and ``example`` forwarded and cached."""
    lines = ["no-negcache", "local=/mesh/", "local-ttl=5", "cache-size=10000"]
    lines += [f"server=/example/127.0.0.1#{upstream}"]
    return lines + [f"host-record={name},{ip}" for name, ip in table.items()]


def upstream_conf(table: dict[str, str]) -> list[str]:
    """dnsmasq as the upstream of the forwarded names, authoritative for ``example``."""
    lines = ["local=/example/", "local-ttl=3600"]
    return lines + [f"host-record={name},{ip}" for name, ip in table.items()]


@contextmanager
def dnsmasq(
    port: int, conf_lines: list[str], workdir: Path, probe: str = "svc-0000.mesh"
) -> Iterator[subprocess.Popen[bytes]]:
    conf = workdir / f"dnsmasq-{port}.conf"
    lines = [f"port={port}", "listen-address=127.0.0.1", "bind-interfaces", "no-resolv"]
    lines += ["no-hosts", *conf_lines]
    conf.write_text("\n".join(lines) + "\n")
    process = subprocess.Popen(
        ["dnsmasq", "--no-daemon", f"--conf-file={conf}"], stderr=subprocess.DEVNULL
    )
    try:
        wait_answering(port, probe)
        yield process
    finally:
        process.terminate()
        process.wait(10)


def wait_answering(port: int, name: str = "svc-0000.mesh", deadline: float = 10.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        probe = subprocess.run(
            ["dig", "@127.0.0.1", "-p", str(port), "+time=1", "+tries=1", name],
            capture_output=True,
            text=True,
        )
        if "status: NOERROR" in probe.stdout:
            return
    raise RuntimeError(f"nothing answers on port {port}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(pid: int, port: int, queries: Path, limit: list[str], mode: str, server: str) -> Run:
    before = cpu_seconds(pid)
    run = dnsperf(port, queries, limit, mode, server)
    used = cpu_seconds(pid) - before
    answered = max(1, run.sent - run.lost)
    return replace(run, cpu_us=used / answered * 1e6)


def warm(port: int, queries: Path) -> None:
    """Send the whole file twice, so every forwarded answer is in the server's cache."""
    dnsperf(port, queries, ["-n", "2", "-t", "3"], "udp", "warm-up")


def dnsperf(port: int, queries: Path, limit: list[str], mode: str, server: str) -> Run:
    cmd = ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(queries), *limit,
           "-c", "4", "-q", "100", "-m", mode]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout

    def number(label: str) -> float:
        match = re.search(rf"{label}:\s+([\d.]+)", out)
        if match is None:
            raise RuntimeError(f"dnsperf printed no {label!r}:\n{out}")
        return float(match.group(1))

    return Run(
        server,
        mode,
        qps=number("Queries per second"),
        latency_ms=number("Average Latency \\(s\\)") * 1000,
        sent=int(number("Queries sent")),
        lost=int(number("Queries lost")),
    )


def report(runs: list[Run]) -> str:
    # The best round of each: the fastest, or at a fixed rate the least CPU per query.
    best: dict[tuple[str, str, str], Run] = {}
    for run in runs:
        key = (run.names, run.mode, run.server)
        seen = best.get(key)
        fixed = run.mode.startswith("udp at")
        if seen is None or (run.cpu_us < seen.cpu_us if fixed else run.qps > seen.qps):
            best[key] = run
    lines = [
        "| names | transport | server | queries/s | vs dnsmasq | server CPU µs/query "
        "| vs dnsmasq | mean latency ms | sent | lost |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    order = {"mesh": 0, "forwarded": 1}
    for (names_set, mode, server), run in sorted(
        best.items(), key=lambda kv: (order.get(kv[0][0], 2), kv[0][1], kv[0][2])
    ):
        reference = best.get((names_set, "udp", "dnsmasq")) if mode == "udp" else None
        ratio = f"{run.qps / reference.qps:.2f}" if reference else "—"
        cpu_ratio = f"{run.cpu_us / reference.cpu_us:.1f}" if reference else "—"
        lines.append(
            f"| {names_set} | {mode} | {server} | {run.qps:,.0f} | {ratio} | {run.cpu_us:.1f} "
            f"| {cpu_ratio} | {run.latency_ms:.2f} | {run.sent:,} | {run.lost:,} |"
        )
    return "\n".join(lines + cached_against_mesh(best))


def cached_against_mesh(best: dict[tuple[str, str, str], Run]) -> list[str]:
    """Ours: what a cached forwarded name costs against a .mesh name."""
    lines = []
    for mode in sorted({mode for _, mode, server in best if server == "ours"}):
        mesh, cached = best.get(("mesh", mode, "ours")), best.get(("forwarded", mode, "ours"))
        if mesh and cached:
            lines.append(
                f"- {mode}: {cached.qps / mesh.qps:.2f} times the queries/s, "
                f"{cached.cpu_us / mesh.cpu_us:.2f} times the CPU per query"
            )
    return ["", "Ours, a cached forwarded name against a .mesh name:", *lines] if lines else []


def machine() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    version = subprocess.run(["dnsmasq", "--version"], capture_output=True, text=True)
    dnsmasq_version = version.stdout.split("\n")[0].replace("Dnsmasq version ", "")
    perf = subprocess.run(["dnsperf", "-h"], capture_output=True, text=True)
    perf_version = re.search(r"Version ([\d.]+)", perf.stdout + perf.stderr)
    return (
        f"nproc {os.cpu_count()}, Python {platform.python_version()}, "
        f"dnsmasq {dnsmasq_version.split()[0]}, "
        f"dnsperf {perf_version.group(1) if perf_version else '?'}, "
        f"{platform.system()} {platform.release()}, load average at start {load}"
    )


@dataclass(frozen=True)
class Setup:
    """What every round needs: the query files, the upstream's port, the options."""

    table: dict[str, str]
    files: dict[str, Path]  # query file per set of names: mesh, forwarded
    upstream: int
    workdir: Path
    args: argparse.Namespace


def main(args: argparse.Namespace) -> None:
    ensure_tools()
    table = names(args.names)
    print(f"DNS: {args.names} .mesh names and {args.names} cached forwarded names, "
          f"dnsperf -c 4 -q 100 for {args.seconds}s per round, "
          f"{args.rounds} rounds ({machine()})\n")  # fmt: skip
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="dns-bench-") as tmp:
        workdir = Path(tmp)
        files = {"mesh": workdir / "mesh.txt", "forwarded": workdir / "forwarded.txt"}
        query_file(files["mesh"], table)
        forwarded = forwarded_names(args.names)
        forwarded_query_file(files["forwarded"], forwarded)
        upstream = free_port()
        with dnsmasq(upstream, upstream_conf(forwarded), workdir, probe="fwd-0000.example"):
            setup = Setup(table, files, upstream, workdir, args)
            for round_no in range(args.rounds):
                runs += one_round(setup, round_no)
    print(report(runs))


def one_round(setup: Setup, round_no: int) -> list[Run]:
    """Each server in turn, each set of names on it; which goes first alternates.

    The forwarded names are sent twice before anything is measured, so both sets
    are measured on a server in the same state (upstream sockets open, cache full).
    """
    args, runs = setup.args, []
    for server in ("ours", "dnsmasq") if round_no % 2 == 0 else ("dnsmasq", "ours"):
        port = free_port()
        if server == "ours":
            starter = ours(port, args.names, setup.upstream)
        else:
            conf = reference_conf(setup.table, setup.upstream)
            starter = dnsmasq(port, conf, setup.workdir)
        with starter as process:
            wait_answering(port)
            warm(port, setup.files["forwarded"])
            sets = list(setup.files.items())
            for names_set, queries in sets if round_no % 2 == 0 else sets[::-1]:
                # dnsmasq's TCP (a child process per connection) is no reference.
                for mode in ["udp", "tcp"] if server == "ours" and args.tcp else ["udp"]:
                    limit = ["-l", str(args.seconds)]
                    run = measure(process.pid, port, queries, limit, mode, server)
                    runs.append(replace(run, names=names_set))
                    print(f"  round {round_no + 1} {server} {names_set} {mode}: {run.qps:,.0f} "
                          f"q/s, {run.cpu_us:.1f} µs/query", file=sys.stderr)  # fmt: skip
                if server == "ours" and args.rate:
                    runs.append(at_rate(process.pid, port, queries, args, names_set))
    return runs


def at_rate(pid: int, port: int, queries: Path, args: argparse.Namespace, names_set: str) -> Run:
    """Ours at a fixed offered rate: the CPU per query of both sets under the same load.

    At full speed the rates move with whatever else runs on the machine, and the CPU
    per query with the rate (fewer datagrams per wake-up of the loop); at one offered
    rate the two sets' CPU per query compare directly.
    """
    limit = ["-l", str(args.seconds), "-Q", str(args.rate)]
    mode = f"udp at {args.rate:,}/s"
    run = replace(measure(pid, port, queries, limit, "udp", "ours"), mode=mode, names=names_set)
    print(f"  ours {names_set} {mode}: {run.cpu_us:.1f} µs/query", file=sys.stderr)
    return run


async def serve(port: int, count: int, upstream: int) -> None:
    table = DnsTable.from_mapping({name: [ip] for name, ip in names(count).items()})
    config = ServerConfig(port=port, upstreams=(f"127.0.0.1:{upstream}",))
    async with DnsServer(table, config):
        print("ready", flush=True)
        await asyncio.Event().wait()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--names", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tcp", action="store_true", help="also measure DNS over TCP")
    parser.add_argument("--rate", type=int, default=20_000,
                        help="also measure ours at this many queries/s (0: do not)")  # fmt: skip
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--upstream", type=int, default=53, help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.serve is not None:
        with suppress(KeyboardInterrupt):
            asyncio.run(serve(arguments.serve, arguments.names, arguments.upstream))
    else:
        main(arguments)
