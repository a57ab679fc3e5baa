"""The sidecars of one zone as real ones: ``gossamer proxy run`` agents with real Envoys,
driven with the same commands as the simulator worker (``tests.bench.fleet.worker``).

``python -m tests.bench.fleet.real_worker CONFIG.json``. Each sidecar is the real agent
process (its Session, CSR, SDS) and its Envoy, on 127.0.0.1 with ports of its own (the
inbound, its outbound listeners, Envoy's admin; the resolver on a free port). What an
Envoy holds is read from its admin API (``/config_dump`` of the active clusters and of the
endpoints), polled every ``POLL`` seconds for the proxies a watch still waits for; once a
change is seen there, the time it was applied is Envoy's own (the latest ``update_time``
gauge of CDS and the EDS clusters, which Envoy sets as it applies an update and ACKs),
since a poll round over 20 Envoys takes a few hundred milliseconds on a loaded machine.
Extra sidecars (``add``) are simulated Sessions, as in the simulator: they only make an
endpoint appear.
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
from tests.bench.fleet.processes import GOSSAMER, free_port
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
        self.reads: list[tuple[int, float]] = []  # (Envoys read, seconds) per poll round
        self.armed_at: dict[str, float] = {}  # watch id -> when it was armed (monotonic)

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
        # No preexec_fn here: forking a process with gRPC threads to run Python in the
        # child breaks gRPC's pollers; setpriv sets the parent-death signal after exec.
        with open(work / "agent.log", "ab") as log:
            self.procs[spec.name] = subprocess.Popen(
                ["setpriv", "--pdeathsig", "KILL", *args], stdout=log, stderr=log,
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
        if cmd["cmd"] == "watch":  # armed before its change is applied
            self.armed_at[cmd["id"]] = time.monotonic()
        await super().command(cmd)
        if self.watches and (self.poller is None or self.poller.done()):
            self.poller = asyncio.create_task(self._poll())

    async def _poll(self) -> None:
        """Read the Envoys a watch waits for until no watch is left."""
        while self.watches:
            names = sorted(set().union(*(w.waiting for w in self.watches.values())))
            started = time.monotonic()
            held = await asyncio.gather(*(self.refresh(n) for n in names))
            now = time.monotonic()
            self.reads.append((len(names), now - started))
            for name, seen in zip(names, held, strict=True):
                met = [w for w in self.watches.values() if name in w.waiting and w.check(seen)]
                if met:
                    applied = await self.applied_at(name, now)
                    # No gauge moves for an update that changes endpoints alone (EDS):
                    # the latest one is then older than the change, and the poll's time
                    # (late by up to a round) is the one to take.
                    if applied < min(self.armed_at.get(w.id, 0.0) for w in met):
                        applied = now
                    self.check(name, seen, applied)
            await asyncio.sleep(POLL)

    async def applied_at(self, name: str, seen_at: float) -> float:
        """When Envoy ``name`` last applied an update (CDS or EDS), on the monotonic
        clock: Envoy's ``update_time`` gauges (Unix ms) are exact where polling is late
        by a round; ``seen_at`` if they cannot be read."""
        try:
            r = await self.http.get(f"http://127.0.0.1:{self.admin[name]}/stats",
                                    params={"filter": r"\.update_time$", "format": "json"})
            stamps = [s["value"] for s in r.json()["stats"]
                      if s.get("name", "").startswith(("cluster_manager.cds.", "cluster."))]
        except (httpx.HTTPError, ValueError, KeyError):
            return seen_at
        if not stamps:
            return seen_at
        ago = time.time() - max(stamps) / 1000
        return min(seen_at, time.monotonic() - ago)

    async def close(self) -> None:
        if self.poller is not None:
            self.poller.cancel()
        if self.reads:  # how late a time read here can be, beside POLL
            rounds = sorted(seconds for _, seconds in self.reads)
            print(f"{len(rounds)} poll rounds of up to {max(n for n, _ in self.reads)} "
                  f"Envoys: median {rounds[len(rounds) // 2] * 1000:.1f} ms, max "
                  f"{rounds[-1] * 1000:.1f} ms", file=sys.stderr)
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
