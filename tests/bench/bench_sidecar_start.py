"""Where a sidecar's start-up goes: ``gossamer proxy run`` from its spawn to its
certificate in Envoy and to its first request served, split at the agent's own log lines,
beside the start of a bare interpreter measured in the same run (the reference).

    .venv/bin/python -m tests.bench.bench_sidecar_start     # --rounds 5

A standalone zone CP in this process (SQLite, no other Dataplanes) and one ``backend``
sidecar; then ``--rounds`` ``web`` sidecars one after the other, each timed from its spawn
(looked at every 10 ms, as ``bench_sidecar`` does) to: the runtime's first line
("registering": the command has checked its inputs and exec'd the runtime, which has
imported the agent), "registered", "certificate for" (the CSR signed), "SDS server on",
"Envoy started", the certificate in Envoy's ``/certs``, and the first request through its
outbound answered. The log lines carry wall-clock milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gossamer.settings import ZoneSettings
from tests.bench import sidecar_env as env
from tests.bench.bench_sidecar import token
from tests.integration.agent_env import free_port
from zone_cp.app import ZoneControlPlane

MILESTONES = (("runtime up", "registering "), ("registered", "registered "),
              ("signed", "certificate for "), ("SDS up", "SDS server on"),
              ("Envoy spawned", "Envoy started"))


def interpreter_start() -> float:
    """The reference: seconds for this Python to start and exit."""
    start = time.monotonic()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.monotonic() - start


def milestones(log: Path, spawned_at: float) -> dict[str, float]:
    """Seconds from the spawn (wall clock) to each milestone's first log line."""
    out: dict[str, float] = {}
    for line in log.read_text(errors="replace").splitlines():
        for name, text in MILESTONES:
            if name not in out and text in line:
                stamp = dt.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
                out[name] = stamp.timestamp() - spawned_at
    return out


async def one(work: Path, cp_url: str, ca: Path, tok: Path, app: int, i: int
              ) -> dict[str, float]:
    wall, start = time.time(), time.monotonic()
    async with env.sidecar(work / f"web-{i}", cp_url, ca, tok, mesh="default",
                           name=f"web-{i}", service="web", app=app, outbound=True) as web:
        cert = asyncio.ensure_future(env.first_true(
            lambda: env.has_certificate(web.admin), 30, "web's certificate", since=start))
        first = await env.first_true(lambda: env.get_ok(f"http://127.0.0.1:{web.outbound}/"),
                                     30, "web's first request", since=start)
        numbers = milestones(work / f"web-{i}" / "agent.log", wall)
        numbers |= {"cert in Envoy": await cert, "first request": first}
    return numbers


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-start-") as tmp:
        work = Path(tmp)
        cp = ZoneControlPlane(ZoneSettings(zone="lab", data_dir=work / "zone", store="sqlite",
                                           api_addr="127.0.0.1:0",
                                           xds_addr=f"127.0.0.1:{free_port()}"))
        await cp.start()
        try:
            assert cp.xds is not None
            cp_url, ca = f"https://127.0.0.1:{cp.xds.port}", cp.tls.ca_file
            server, app = await env.app_server()
            btok = await token(cp.manager, "default", "backend", work / "b.token")
            async with env.sidecar(work / "backend", cp_url, ca, btok, mesh="default",
                                   name="backend-1", service="backend", app=app) as backend:
                await env.first_true(lambda: env.has_certificate(backend.admin), 60,
                                     "backend")
                runs = []
                for i in range(args.rounds):
                    tok = await token(cp.manager, "default", "web", work / f"w{i}.token")
                    runs.append(await one(work, cp_url, ca, tok, app, i))
                    print(f"round {i}: " + ", ".join(f"{k} {v:.2f}" for k, v in
                                                      runs[-1].items()), flush=True)
            server.close()
        finally:
            await cp.stop()
    ref = statistics.median(interpreter_start() for _ in range(args.rounds))
    print(f"\nbare interpreter start (reference): {ref * 1000:.0f} ms")
    print("\n| from spawn to | median s | min s | max s | / interpreter start |")
    print("|---|---:|---:|---:|---:|")
    for key in runs[0]:
        values = [r[key] for r in runs if key in r]
        med = statistics.median(values)
        print(f"| {key} | {med:.2f} | {min(values):.2f} | {max(values):.2f} | "
              f"{med / ref:.1f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    asyncio.run(main(parser.parse_args()))
