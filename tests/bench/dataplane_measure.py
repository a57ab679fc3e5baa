"""Measuring the data-plane benchmark's paths: ``wrk --latency`` runs parsed into a
``Result``, the CPU time of a path's Envoys read from /proc (every thread, before and
after) per request, interleaved rounds (``measure``) and their medians, and the table and
machine line the run prints.
"""

from __future__ import annotations

import asyncio
import os
import re
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from proxy.envoy_binary import envoy_binary
from tests.bench.dataplane_paths import Target, nginx_binary

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[str, int, float] | None:
    """``(comm, ppid, cpu seconds of all its threads)`` of ``pid``, None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = text[text.index("(") + 1:text.rindex(")")]
    fields = text[text.rindex(")") + 2:].split()
    return comm, int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK


def envoy_cpu(roots: tuple[int, ...]) -> float:
    """CPU seconds used so far by the Envoys among ``roots`` and their descendants."""
    stats = {int(e.name): _stat(int(e.name)) for e in Path("/proc").iterdir()
             if e.name.isdigit()}
    family, grew = set(roots), True
    while grew:
        more = {pid for pid, st in stats.items() if st and st[1] in family} - family
        family |= more
        grew = bool(more)
    return sum(st[2] for pid, st in stats.items()
               if pid in family and st is not None and st[0] == "envoy")


@dataclass(frozen=True)
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    envoy_cpu_us: float = 0.0  # per request, every Envoy on the path together


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def parse_wrk(text: str) -> tuple[Result, int]:
    """``wrk --latency`` output → requests/s, p50/p99 in ms, and the request count;
    errors raise."""
    for marker in ("Socket errors", "Non-2xx or 3xx responses"):
        if marker in text:
            raise RuntimeError(f"wrk reported {marker.lower()}:\n{text}")
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    count = re.search(r"(\d+) requests in", text)
    p50 = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    if rps is None or count is None or p50 is None or p99 is None:
        raise RuntimeError(f"cannot read wrk's output:\n{text}")
    return Result(float(rps.group(1)), float(p50.group(1)) * _UNITS[p50.group(2)],
                  float(p99.group(1)) * _UNITS[p99.group(2)]), int(count.group(1))


@dataclass(frozen=True)
class Settings:
    threads: int = 1
    connections: int = 16
    seconds: int = 10
    warmup: int = 3
    rounds: int = 5

    def wrk_args(self, seconds: int) -> list[str]:
        return ["wrk", f"-t{self.threads}", f"-c{self.connections}", f"-d{seconds}s",
                "--latency"]


async def wrk(target: Target, s: Settings, seconds: int) -> Result:
    before = envoy_cpu(target.pids)
    proc = await asyncio.create_subprocess_exec(
        *s.wrk_args(seconds), f"http://127.0.0.1:{target.port}/",
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = await proc.communicate()
    used = envoy_cpu(target.pids) - before
    if proc.returncode != 0:
        raise RuntimeError(f"wrk exited with {proc.returncode}:\n{out.decode()}")
    result, count = parse_wrk(out.decode())
    return replace(result, envoy_cpu_us=used * 1e6 / max(1, count))


async def measure(targets: dict[str, Target], s: Settings,
                  report: Callable[[str], None]) -> dict[str, list[Result]]:
    for target in targets.values():
        await wrk(target, s, s.warmup)
    results: dict[str, list[Result]] = {name: [] for name in targets}
    names = list(targets)
    for i in range(s.rounds):
        # Each round starts with the next path, so none is always measured first.
        for name in names[i % len(names):] + names[:i % len(names)]:
            r = await wrk(targets[name], s, s.seconds)
            results[name].append(r)
            report(f"round {i + 1} {name}: {r.rps:,.0f} req/s, p50 {r.p50_ms:.3f} ms, "
                   f"p99 {r.p99_ms:.3f} ms, Envoy CPU {r.envoy_cpu_us:.1f} us/req")
    return results


def median_round(results: list[Result]) -> Result:
    return Result(*(statistics.median(getattr(r, f) for r in results)
                    for f in ("rps", "p50_ms", "p99_ms", "envoy_cpu_us")))


def _cpu(us: float) -> str:
    return f"{us:.1f}" if us else "n/a"


def table(results: dict[str, list[Result]]) -> str:
    m = {name: median_round(rs) for name, rs in results.items()}
    lines = ["| path | req/s | p50 ms | p99 ms | Envoy CPU µs/req |",
             "|---|---:|---:|---:|---:|"]
    lines += [f"| {name} | {r.rps:,.0f} | {r.p50_ms:.3f} | {r.p99_ms:.3f} | "
              f"{_cpu(r.envoy_cpu_us)} |" for name, r in m.items()]
    lines += ["", "| ratio | req/s | p50 | p99 | Envoy CPU/req |", "|---|---:|---:|---:|---:|"]
    for a, b in (("gossamer", "static"), ("gossamer", "direct"), ("static again", "static")):
        x, r = m[a], m[b]
        cpu = f"{x.envoy_cpu_us / r.envoy_cpu_us:.2f}" if r.envoy_cpu_us else "n/a"
        lines.append(f"| {a} / {b} | {x.rps / r.rps:.2f} | {x.p50_ms / r.p50_ms:.2f} | "
                     f"{x.p99_ms / r.p99_ms:.2f} | {cpu} |")
    return "\n".join(lines)


def machine() -> str:
    def first_line(argv: list[str]) -> str:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        return (done.stdout or done.stderr).strip().splitlines()[0]

    envoy = first_line([str(envoy_binary()), "--version"]).split("version:")[-1].strip()
    wrk_version = first_line(["wrk", "--version"]).split(" Copyright")[0]
    return (f"nproc {os.cpu_count()}, Python {sys.version.split()[0]}, Envoy {envoy}, "
            f"{first_line([nginx_binary(), '-v'])}, {wrk_version}")

