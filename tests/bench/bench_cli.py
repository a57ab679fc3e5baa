"""Benchmark: how long ``gossamer get meshes`` takes, against a bare interpreter.

Run ``.venv/bin/python -m tests.bench.bench_cli`` (``--runs 30``). A real global CP
(``gossamer global run``, SQLite) is started on free ports and a context added to a
fresh config file, as an operator would; then, alternating so that the machine's load
falls on both alike, the installed console script runs ``gossamer get meshes`` (start,
read the config and the token, one HTTP request, the table, exit) and the reference runs
``python -c pass`` with the same interpreter (``--python`` for another, such as
``python3`` from PATH). Reported per command: wall time (median and best) and CPU time
(user + system of the child, median), and the ratios get/reference. CPU time moves
less than wall time on a loaded machine. ``--tree DIR`` runs the CLI from another
source tree (``git archive <commit> | tar -x -C DIR``) for a before/after comparison.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.integration.cli_env import GOSSAMER, _clean_env, _free_port, global_proc


@dataclass
class Samples:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def run(self, args: list[str], env: dict[str, str]) -> str:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
        self.wall.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(args)} failed: {done.stderr}")
        return done.stdout


def _ms(value: float) -> str:
    return f"{value * 1000:,.0f}"


def _get_command(tree: Path | None) -> list[str]:
    if tree is None:
        return [str(GOSSAMER), "get", "meshes"]
    launch = (f"import sys; sys.path.insert(0, {str(tree)!r}); from cli.main import main; "
              "main(prog_name='gossamer')")
    return [sys.executable, "-c", launch, "get", "meshes"]


def measure(runs: int, python: str, tmp: Path,
            tree: Path | None = None) -> tuple[Samples, Samples]:
    env = _clean_env(tmp / "config.yaml")
    cp = global_proc(tmp / "global", _free_port(), env).start()
    try:
        token = tmp / "global" / "admin-token"
        subprocess.run([str(GOSSAMER), "config", "control-planes", "add", "--name", "bench",
                        "--address", cp.api, "--token-file", str(token)],
                       env=env, check=True, capture_output=True)
        get, bare = Samples(), Samples()
        command = _get_command(tree)
        out = get.run(command, env)  # warm the page cache
        assert "default" in out, out
        get.wall.clear()
        get.cpu.clear()
        for _ in range(runs):
            get.run(command, env)
            bare.run([python, "-c", "pass"], env)
        return get, bare
    finally:
        cp.stop()


def report(get: Samples, bare: Samples, python: str) -> str:
    rows = [("`gossamer get meshes`", get), (f"`{python} -c pass` (reference)", bare)]
    lines = ["| command | wall median ms | wall best ms | CPU median ms |",
             "|---|---:|---:|---:|"]
    for name, s in rows:
        lines.append(f"| {name} | {_ms(statistics.median(s.wall))} | {_ms(min(s.wall))} | "
                     f"{_ms(statistics.median(s.cpu))} |")
    ratio_wall = statistics.median(get.wall) / statistics.median(bare.wall)
    ratio_best = min(get.wall) / min(bare.wall)
    ratio_cpu = statistics.median(get.cpu) / max(statistics.median(bare.cpu), 1e-6)
    lines.append(f"| ratio get / reference | {ratio_wall:.1f} | {ratio_best:.1f} | "
                 f"{ratio_cpu:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--python", default=sys.executable,
                        help="the reference interpreter (default: this one)")
    parser.add_argument("--tree", type=Path, default=None,
                        help="run the CLI from this source tree (a git archive)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        get, bare = measure(args.runs, args.python, Path(tmp), args.tree)
    print(f"# {args.runs} runs each, Python {platform.python_version()}, nproc "
          f"{os.cpu_count()}, load average {os.getloadavg()[0]:.1f}")
    print(report(get, bare, args.python))


if __name__ == "__main__":
    main()
