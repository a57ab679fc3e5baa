"""Benchmark: the data path through two Gossamer sidecars against a hand-written Envoy pair.

Run ``.venv/bin/python -m tests.bench.bench_dataplane`` (as root it installs ``wrk`` and
``nginx`` from Debian when missing). One run measures four paths to the same nginx
(one worker, a fixed 2-byte body, no access log) with the same ``wrk --latency`` settings:

- ``direct``: wrk → nginx;
- ``static``: wrk → client Envoy → mTLS → server Envoy → nginx, both Envoys from the
  hand-written YAML in ``tests/bench/dataplane_paths.py`` (``--concurrency 1``;
  certificates from ``gossamer.pki.certs``, the same ECDSA P-256 keys and SPIFFE SANs the
  mesh uses, the client verifying the server's SAN);
- ``gossamer``: wrk → web's sidecar (explicit outbound) → mTLS → backend's sidecar
  (inbound, RBAC from the default mesh's allow-all permission) → nginx, programmed by a
  standalone zone CP running in this process, each sidecar a real ``gossamer proxy run``
  with ``--concurrency 1``.

- ``static again``: a second, identical hand-written pair. It is the control: how far
  apart two identical configurations measure on this machine in this run (an A/A
  test), which is the resolution of the gossamer/static ratio.

Every path is warmed up, then all are measured in turn, ``--rounds`` times interleaved
(each round starting with the next path) so that a burst of load from elsewhere on the
machine hits all alike; the table gives each path's median round and the ratios
gossamer/static, gossamer/direct and static again/static. A round with a socket error
or a non-2xx answer fails the run.

Besides wrk's numbers, each round reads the CPU time of the path's Envoys from /proc
(every thread, before and after) and divides it by the requests wrk completed: CPU per
request is what a proxy's configuration costs, and unlike req/s it barely moves when
other work on the machine takes cores away from the benchmark.

The paths are set up in ``tests/bench/dataplane_paths.py``, measured in
``tests/bench/dataplane_measure.py``; this module runs them and prints the table.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
from pathlib import Path

from tests.bench.dataplane_measure import Settings, machine, measure, table
from tests.bench.dataplane_paths import ensure_tools, gossamer_mesh, nginx, static_pair


async def main(s: Settings, keep: Path | None = None) -> None:
    logging.basicConfig(level=logging.ERROR)
    ensure_tools()
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="bench-dp-") as tmp:
        root = keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        async with nginx(root / "nginx") as app, \
                static_pair(root / "static", app.port) as static, \
                gossamer_mesh(root / "gossamer", app.port) as mesh, \
                static_pair(root / "static-again", app.port) as control:
            targets = {"direct": app, "static": static, "gossamer": mesh,
                       "static again": control}
            results = await measure(targets, s,
                                    lambda line: print(line, file=sys.stderr, flush=True))
    print(f"\nwrk -t{s.threads} -c{s.connections} -d{s.seconds}s --latency, "
          f"median of {s.rounds} interleaved rounds after a {s.warmup}s warm-up\n")
    print(table(results))
    print(f"\n{machine()}; load average {load_before} before, "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} after")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=Settings.threads)
    parser.add_argument("--connections", type=int, default=Settings.connections)
    parser.add_argument("--seconds", type=int, default=Settings.seconds)
    parser.add_argument("--warmup", type=int, default=Settings.warmup)
    parser.add_argument("--rounds", type=int, default=Settings.rounds)
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR",
                        help="work in DIR (new) and keep it: configs, logs, Envoy work dirs")
    a = parser.parse_args()
    asyncio.run(main(Settings(a.threads, a.connections, a.seconds, a.warmup, a.rounds),
                     a.keep))

