"""Benchmark: issue 15's chaos scenario, with its numbers.

Run ``.venv/bin/python -m tests.bench.bench_chaos`` (root: PostgreSQL runs as its own
user). It builds the topology of ``tests/integration/test_chaos.py`` (three global
replicas, two zones of two zone CP replicas, real sidecars and an ingress; see
``tests/integration/chaos_env.py``), runs its faults with the same load (a call every
20 ms from west to east, a policy write every 50 ms through the global replicas in
turn) and prints, per fault, the time to a new leader and the writes refused and calls
failed while it lasted, then the convergence time after the last write. ``--lease``
sets every control plane's ``--leader-lease`` (the product's default is 10 s; the test
uses 4 s); ``--rounds`` repeats the scenario on a new topology.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from tests.integration.chaos_env import topology
from tests.integration.chaos_run import Report, kinds, run_chaos
from tests.pg import PostgresUnavailable


def one_round(lease: float) -> Report:
    with (
        tempfile.TemporaryDirectory(prefix="gossamer-chaos-") as tmp,
        topology(Path(tmp), lease) as env,
    ):
        return run_chaos(env)


def report(lease: float, reports: list[Report]) -> None:
    print(
        f"lease {lease:g} s, {len(reports)} round(s); load average "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} at the end\n"
    )
    print("| fault | new leader after s (each round) | writes refused | failed calls |")
    print("|---|---|---:|---:|")
    for i, fault in enumerate(reports[0].faults):
        rounds = [r.faults[i] for r in reports]
        times = ", ".join(f"{f.new_leader_s:.2f}" for f in rounds)
        refused: dict[str, int] = {}
        for f, r in zip(rounds, reports, strict=True):
            for kind, n in f.refused(r.writer).items():
                refused[kind] = refused.get(kind, 0) + n
        failed = sum(f.failed_calls(r.traffic) for f, r in zip(rounds, reports, strict=True))
        print(f"| {fault.what} | {times} | {kinds(refused)} | {failed} |")
    converged = [r.convergence_s for r in reports]
    writes = sum(len(r.writer.writes) for r in reports)
    acked = sum(sum(w.acked for w in r.writer.writes) for r in reports)
    calls = sum(len(r.traffic.calls) for r in reports)
    failed = sum(len(r.traffic.failures()) for r in reports)
    errors = [e for r in reports for e in r.writer.errors]
    print(
        f"\nconvergence after the last write: median {statistics.median(converged):.2f} s, "
        f"max {max(converged):.2f} s; writes {writes} ({acked} answered 2xx, "
        f"{len(errors)} lost or foreign); calls {calls} ({failed} failed)"
    )
    for r in reports:
        print(f"set up in {r.setup_s:.1f} s, faults and writes for {r.faults_s:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lease", type=float, default=10.0, help="seconds")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    try:
        reports = [one_round(args.lease) for _ in range(args.rounds)]
    except PostgresUnavailable as exc:
        raise SystemExit(f"PostgreSQL is unavailable: {exc}") from None
    report(args.lease, reports)


if __name__ == "__main__":
    main()
