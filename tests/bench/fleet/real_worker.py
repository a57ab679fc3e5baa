"""The sidecars of one zone as real ones: ``gossamer proxy run`` agents with real Envoys,
driven with the same commands as the simulator worker (``tests.bench.fleet.worker``).

``python -m tests.bench.fleet.real_worker CONFIG.json``. Each sidecar is the real agent
process (its Session, CSR, SDS) and its Envoy, on 127.0.0.1 with ports of its own (the
inbound, its outbound listeners, Envoy's admin; the resolver on a free port). What an
Envoy holds is read from its admin API (``/config_dump`` of the active clusters and of the
endpoints), polled every ``POLL`` seconds for the proxies a watch still waits for: the
time a change is first seen there is when Envoy applied it, which it ACKs at once, so
these times are late by up to a poll interval and an admin round trip. Extra sidecars
(``add``) are simulated Sessions, as in the simulator: they only make an endpoint appear.
Only the changes are timed here: ``counts`` answers zeros (no burst with real Envoys).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.bench.fleet import worker
from tests.bench.fleet.processes import GOSSAMER, free_port, spawn
from tests.bench.fleet.sidecar import Seen, Spec
from tests.bench.fleet.watches import affected

POLL = 0.02
READY_DEADLINE = 180.0
CLUSTERS = "/config_dump?resource=dynamic_active_clusters"
ENDPOINTS = "/config_dump?resource=dynamic_endpoint_configs&include_eds"


def _ms(duration: str) -> int:
    return round(float(duration.rstrip("s")) * 1000)


def seen_from(clusters: dict[str, Any], endpoints: dict[str, Any]) -> Seen:
    """An Envoy's config dumps reduced to what the watches read."""
    seen = Seen()
    for item in clusters.get("configs", []):
        cluster = item.get("cluster", {})
        if "name" in cluster:
            seen.connect_ms[cluster["name"]] = _ms(cluster.get("connect_timeout", "5s"))
    for item in endpoints.get("configs", []):
        cla = item.get("endpoint_config", {})
        if "cluster_name" in cla:
            seen.endpoints[cla["cluster_name"]] = frozenset(
                f"{e['endpoint']['address']['socket_address']['address']}:"
                f"{e['endpoint']['address']['socket_address'].get('port_value', 0)}"
                for group in cla.get("endpoints", []) for e in group.get("lb_endpoints", []))
    return seen


class RealWorker(worker.Worker):
    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self.root = Path(config["root"]) / f"real-{config['zone']}"
        self.xds, self.ca_file = config["xds"], config["ca_file"]
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.admin: dict[str, int] = {}
        self.held: dict[str, Seen] = {}
        self.http = httpx.AsyncClient(timeout=5)
        self.poller: asyncio.Task[None] | None = None

    def _start(self, spec: Spec) -> None:
        work = self.root / spec.name
        work.mkdir(parents=True)
        doc = spec.document(self.mesh)
        net = doc["networking"]
        net["address"] = "127.0.0.1"
        net["inbound"][0].update(port=free_port(), servicePort=free_port())
        for outbound in net["outbound"]:
            outbound["port"] = free_port()
        (work / "dataplane.json").write_text(json.dumps(doc))
        (work / "token").write_text(self.tokens[spec.service])
        self.admin[spec.name] = free_port()
        args = [str(GOSSAMER), "proxy", "run", "--dataplane", str(work / "dataplane.json"),
                "--cp", f"https://{self.xds}", "--token-file", str(work / "token"),
                "--cp-ca", self.ca_file, "--work-dir", str(work / "work"),
                "--admin-port", str(self.admin[spec.name]), "--concurrency", "1",
                "--drain-time", "1s"]
        self.procs[spec.name] = spawn(args, work / "agent.log",
                                      env={**os.environ, "GOSSAMER_DNS_ADDR": "127.0.0.1:0"})

    async def refresh(self, name: str) -> Seen:
        base = f"http://127.0.0.1:{self.admin[name]}"
        clusters, endpoints = await asyncio.gather(self.http.get(base + CLUSTERS),
                                                   self.http.get(base + ENDPOINTS))
        self.held[name] = seen_from(clusters.json(), endpoints.json())
        return self.held[name]

    async def _ready(self, name: str) -> None:
        until = time.monotonic() + READY_DEADLINE
        while time.monotonic() < until:
            if self.procs[name].poll() is not None:
                raise RuntimeError(f"{name}: gossamer proxy run exited; see "
                                   f"{self.root / name / 'agent.log'}")
            try:
                seen = await self.refresh(name)
                if seen.connect_ms and seen.endpoints:
                    return
            except (httpx.HTTPError, ValueError):
                pass
            await asyncio.sleep(0.2)
        raise RuntimeError(f"{name}: Envoy has no clusters and endpoints after "
                           f"{READY_DEADLINE}s")

    async def connect_all(self) -> None:
        started = time.monotonic()
        for spec in self.specs:
            self._start(spec)
        await asyncio.gather(*(self._ready(s.name) for s in self.specs))
        worker.emit({"event": "ready", "connected": len(self.procs),
                     "seconds": time.monotonic() - started})

    async def holdings(self, cmd: dict[str, Any]) -> dict[str, Seen]:
        if cmd["cmd"] == "watch":
            await asyncio.gather(*(self.refresh(n) for n in affected(self.specs, cmd)))
        return self.held if cmd["cmd"] == "watch" else {n: Seen() for n in self.held}

    async def command(self, cmd: dict[str, Any]) -> None:
        await super().command(cmd)
        if self.watches and (self.poller is None or self.poller.done()):
            self.poller = asyncio.create_task(self._poll())

    async def _poll(self) -> None:
        """Read the Envoys a watch waits for until no watch is left."""
        while self.watches:
            names = sorted(set().union(*(w.waiting for w in self.watches.values())))
            held = await asyncio.gather(*(self.refresh(n) for n in names))
            now = time.monotonic()
            for name, seen in zip(names, held, strict=True):
                self.check(name, seen, now)
            await asyncio.sleep(POLL)

    async def close(self) -> None:
        if self.poller is not None:
            self.poller.cancel()
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        await self.http.aclose()
        await super().close()


if __name__ == "__main__":
    asyncio.run(worker.main(sys.argv[1], RealWorker))
