"""Benchmark: how fast a global replica takes over the leader's singleton work.

Run ``.venv/bin/python -m tests.bench.bench_leader_failover``. On a throwaway PostgreSQL
(``tests/pg.py``) it runs two real ``gossamer global run`` processes per lease length,
then, ``--rounds`` times: ``kill -9`` (or SIGSTOP) the leader and times until the other
reports ``gossamer_leader 1`` on ``/metrics`` (polled every 50 ms), while a writer applies
a policy through the surviving replica every 50 ms and counts the answers that were not
2xx. The killed replica is started again as the next round's follower (a stopped one is
killed after the round). The reference is the lease itself: the takeover is reported as
a ratio to it (the design's bound is the lease plus a tenth of it, a follower's retry).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.integration.cli_env import Proc, _clean_env, _free_port
from tests.pg import PostgresCluster, PostgresUnavailable

POLL = 0.05


@dataclass(frozen=True)
class Round:
    lease: float
    how: str
    takeover_s: float
    writes: int
    refused: int


def start(tmp: Path, name: str, store: str, lease: float) -> Proc:
    data = tmp / name
    api = f"127.0.0.1:{_free_port()}"
    args = ["global", "run", "--data-dir", str(data), "--store", store, "--api-addr", api,
            "--sync-addr", f"127.0.0.1:{_free_port()}", "--leader-lease", f"{lease:g}s"]
    return Proc(args, tmp / f"{name}.log", f"http://{api}",
                _clean_env(tmp / f"{name}.yaml")).start()


def leading(proc: Proc) -> bool:
    try:
        text = httpx.get(f"{proc.api}/metrics", timeout=1.0).text
    except httpx.HTTPError:
        return False
    return 'gossamer_leader{lease="global"} 1.0' in text


def wait_for(check: object, timeout: float) -> float:
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if check():  # type: ignore[operator]
            return time.monotonic() - began
        time.sleep(POLL)
    raise TimeoutError(f"no leader after {timeout}s")


class Writer(threading.Thread):
    """Applies a MeshTimeout through ``proc`` every 50 ms; counts what was not 2xx."""

    def __init__(self, proc: Proc, token: str) -> None:
        super().__init__(daemon=True)
        self.proc, self.token = proc, token
        self.writes = self.refused = 0
        self.done = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.proc.api, timeout=5.0,
                          headers={"Authorization": f"Bearer {self.token}"}) as client:
            while not self.done.wait(POLL):
                doc = {"type": "MeshTimeout", "name": f"w-{self.writes}", "mesh": "default",
                       "spec": {"targetRef": {"kind": "Mesh"}, "to": [{
                           "targetRef": {"kind": "Mesh"},
                           "default": {"idleTimeout": "5s"}}]}}
                self.writes += 1
                try:
                    ok = client.put(f"/meshes/default/meshtimeouts/w-{self.writes - 1}",
                                    json=doc).is_success
                except httpx.HTTPError:
                    ok = False
                self.refused += not ok


def one_round(tmp: Path, store: str, lease: float, how: str, procs: list[Proc],
              n: int) -> Round:
    leader = next(p for p in procs if leading(p))
    other = next(p for p in procs if p is not leader)
    token = (Path(other.args[other.args.index("--data-dir") + 1]) / "admin-token")
    writer = Writer(other, token.read_text().strip())
    writer.start()
    assert leader.popen is not None
    os.kill(leader.popen.pid, signal.SIGKILL if how == "kill -9" else signal.SIGSTOP)
    took = wait_for(lambda: leading(other), 3 * lease + 15)
    writer.done.set()
    writer.join()
    if how != "kill -9":
        leader.popen.kill()
    leader.popen.wait()
    procs.remove(leader)
    procs.append(start(tmp, f"g{lease:g}-{n}", store, lease))
    return Round(lease, how, took, writer.writes, writer.refused)


def run(leases: list[float], rounds: int) -> list[Round]:
    results: list[Round] = []
    cluster = PostgresCluster.create()
    try:
        for lease in leases:
            store = cluster.create_database(f"failover_{int(lease * 10)}")
            with tempfile.TemporaryDirectory(prefix="gossamer-failover-") as tmp_dir:
                tmp = Path(tmp_dir)
                first = start(tmp, f"g{lease:g}-a", store, lease)
                wait_for(lambda p=first: leading(p), 30)  # type: ignore[misc]
                procs = [first]
                procs.append(start(tmp, f"g{lease:g}-b", store, lease))
                try:
                    for _ in range(rounds):
                        for how in ("kill -9", "SIGSTOP"):
                            results.append(one_round(tmp, store, lease, how, procs,
                                                     len(results)))
                finally:
                    for proc in procs:
                        proc.stop()
    finally:
        cluster.destroy()
    return results


def report(results: list[Round]) -> None:
    print(f"load average {os.getloadavg()[0]:.1f} (1 min) at the end\n")
    print("| lease | fault | takeovers | median s | max s | median / lease | writes | "
          "refused |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    keys = sorted({(r.lease, r.how) for r in results})
    for lease, how in keys:
        rs = [r for r in results if (r.lease, r.how) == (lease, how)]
        times = [r.takeover_s for r in rs]
        med = statistics.median(times)
        print(f"| {lease:g} s | {how} | {len(rs)} | {med:.2f} | {max(times):.2f} | "
              f"{med / lease:.2f} | {sum(r.writes for r in rs)} | "
              f"{sum(r.refused for r in rs)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leases", default="3,10", help="lease lengths, seconds")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    try:
        results = run([float(x) for x in args.leases.split(",")], args.rounds)
    except PostgresUnavailable as exc:
        raise SystemExit(f"PostgreSQL is unavailable: {exc}") from None
    report(results)


if __name__ == "__main__":
    main()
