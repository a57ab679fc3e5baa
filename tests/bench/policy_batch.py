"""What ``bench_policies`` applies and how it watches the control plane meanwhile.

- ``batch(size, proxied, marker)``: ``size`` policies of the shape issue 18 names, on the
  services of ``bench_fleet.layout`` (``svc-0000``...): four mesh-wide ones, then per
  service a MeshTimeout and a MeshRetry on it and a MeshTrafficPermission from each of
  its ``CALLERS`` callers (the service pairs), and MeshTimeouts on a tag no proxy carries
  to reach the exact count. Services grow with the size (99 at 1,000, 1,999 at 20,000);
  the fleet's proxies serve the first ``proxied`` of them. The batch carries markers
  the simulated sidecars can see: the mesh-wide MeshTimeout's connect timeout is
  ``marker`` and each proxied service's MeshTimeout sets ``marker + 1 + i`` on its first
  outbound, values no earlier batch used, so a proxy holding its markers was generated
  from a state that holds the batch (one store transaction per chunk).
- ``chunks``: the API takes at most ``MAX_BATCH`` documents and ``--api-max-body`` bytes
  per ``POST /_apply``; a larger batch is sent as consecutive chunks of ``CHUNK``.
- ``Poller``: a thread of its own (so the benchmark's event loop cannot delay it) that
  GETs ``/healthz`` and one stored resource every ``INTERVAL`` and keeps each latency.
- ``cpu_seconds``: user + system CPU of a process, from ``/proc/PID/stat``.
- ``standalone``: a zone CP without ``--global``, started with the ``gossamer`` CLI as in
  ``tests.bench.fleet.processes`` (SQLite, free loopback ports, dies with the benchmark).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.bench.fleet.processes import ControlPlane, Fleet, free_port

CALLERS = 8
PER_SERVICE = 2 + CALLERS
MESH_WIDE = 4
CHUNK = 5_000  # documents per POST /_apply: under MAX_BATCH and ~2 MiB of JSON
INTERVAL = 0.02


def service(i: int) -> str:
    return f"svc-{i:04d}"


def _doc(kind: str, name: str, target: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"type": kind, "name": name, "mesh": "default",
            "spec": {"targetRef": target, **spec}}


def _to(name: str | None, default: dict[str, Any]) -> dict[str, Any]:
    ref = {"kind": "Mesh"} if name is None else {"kind": "MeshService", "name": name}
    return {"targetRef": ref, "default": default}


def _mesh_wide(marker: int) -> Iterator[dict[str, Any]]:
    mesh = {"kind": "Mesh"}
    yield _doc("MeshTimeout", "batch-timeouts", mesh,
               to=[_to(None, {"connectionTimeout": f"{marker}ms"})])
    yield _doc("MeshRetry", "batch-retries", mesh,
               to=[_to(None, {"tcp": {"maxConnectAttempt": 2}})])
    yield _doc("MeshCircuitBreaker", "batch-breakers", mesh,
               to=[_to(None, {"connectionLimits": {"maxConnections": 1024}})])
    yield _doc("MeshTrafficPermission", "batch-allow-all", mesh,
               **{"from": [{"targetRef": mesh, "default": {"action": "Allow"}}]})


def timeout_of(i: int, services: int, proxied: int, ms: int | None) -> dict[str, Any]:
    """Service ``i``'s MeshTimeout; for a proxied service its first ``to[]`` is the
    service's first outbound in ``bench_fleet.layout`` and sets its connect timeout."""
    name = service(i)
    first = {"idleTimeout": "1h"} if ms is None else {"connectionTimeout": f"{ms}ms"}
    ring = proxied if i < proxied else services
    return _doc("MeshTimeout", f"mt-{name}", {"kind": "MeshService", "name": name},
                to=[_to(service((i + 1) % ring), first),
                    _to(service((i + 2) % services), {"idleTimeout": "2h"})])


def _per_service(i: int, services: int, proxied: int, marker: int | None
                 ) -> Iterator[dict[str, Any]]:
    name = service(i)
    target = {"kind": "MeshService", "name": name}
    yield timeout_of(i, services, proxied, marker)
    yield _doc("MeshRetry", f"mr-{name}", target,
               to=[_to(service((i + 1) % services), {"tcp": {"maxConnectAttempt": 4}})])
    for k in range(1, CALLERS + 1):
        caller = service((i - k) % services)
        yield _doc("MeshTrafficPermission", f"mtp-{caller}-{name}", target, **{"from": [
            {"targetRef": {"kind": "MeshService", "name": caller},
             "default": {"action": "Allow"}}]})


def services_for(size: int) -> int:
    return max(1, (size - MESH_WIDE) // PER_SERVICE)


def batch(size: int, proxied: int, marker: int) -> list[dict[str, Any]]:
    """``size`` policies, markers last (see the module's docstring)."""
    services = services_for(size)
    docs = list(_mesh_wide(marker))
    for i in range(services):
        docs += _per_service(i, services, proxied, marker + 1 + i if i < proxied else None)
    for j in range(size - len(docs)):
        docs.append(_doc("MeshTimeout", f"canary-{j}",
                         {"kind": "MeshSubset", "tags": {"version": f"canary-{j}"}},
                         to=[_to(None, {"idleTimeout": "1h"})]))
    return docs[:size][::-1]


def chunks(docs: list[dict[str, Any]], size: int = CHUNK) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(docs), size):
        yield docs[start:start + size]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Poller:
    """GETs ``paths`` of ``cp`` in turn, one every ``interval``, from its own thread; an
    answer that is not a 200 or an error counts as a failure (its latency is kept too)."""

    cp: ControlPlane
    paths: tuple[str, ...]
    interval: float = INTERVAL
    latencies: dict[str, list[float]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Poller:
        # Once each first: a route's first request builds FastAPI's state for it (a
        # quarter of a second here), a cost of the process's start, not of the batch.
        for path in self.paths:
            httpx.get(f"{self.cp.api}{path}", headers=self.cp.headers, timeout=60)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> dict[str, list[float]]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return self.latencies

    def _run(self) -> None:
        headers = self.cp.headers
        with httpx.Client(base_url=self.cp.api, headers=headers, timeout=60) as http:
            while not self._stop.is_set():
                for path in self.paths:
                    start = time.perf_counter()
                    try:
                        ok = http.get(path).status_code == 200
                    except httpx.HTTPError as exc:
                        ok = False
                        self.failures.append(f"{path}: {exc!r}")
                    self.latencies.setdefault(path, []).append(time.perf_counter() - start)
                    if not ok and len(self.failures) < 10:
                        self.failures.append(f"{path}: not 200")
                    self._stop.wait(self.interval)


def standalone(fleet: Fleet, name: str = "zone-0") -> ControlPlane:
    """A standalone zone CP (no ``--global``) in ``fleet``, ready; ``fleet.stop`` ends it."""
    data, port, xds = fleet.root / f"zone-{name}", free_port(), free_port()
    args = ["zone", "run", "--zone", name, "--data-dir", str(data),
            "--api-addr", f"127.0.0.1:{port}", "--xds-addr", f"127.0.0.1:{xds}",
            "--store", "sqlite", "--log-level", "warning"]
    log = fleet.root / f"zone-{name}.log"
    zone = ControlPlane(name, fleet._cp(args, log), f"http://127.0.0.1:{port}", data, log,
                        xds=f"127.0.0.1:{xds}")
    fleet.zones.append(zone)
    zone.wait_ready()
    return zone


def dataplane_token(cp: ControlPlane, svc: str, max_dataplanes: int) -> str:
    """A dataplane token from ``cp`` (the global, or a standalone zone)."""
    r = httpx.post(f"{cp.api}/tokens/dataplane", headers=cp.headers, timeout=30, json={
        "mesh": "default", "service": svc, "validFor": "24h",
        "maxDataplanes": max_dataplanes})
    if r.status_code >= 300:
        raise RuntimeError(f"POST /tokens/dataplane: {r.status_code} {r.text}")
    return str(r.json()["token"])


POLICY_KINDS = ("MeshTimeout", "MeshRetry", "MeshTrafficPermission", "MeshCircuitBreaker")


def stored_policies(zone: ControlPlane) -> int:
    """Policies of the batch's kinds in ``zone``'s SQLite file (read-only, not through its
    API, whose answers wait for the loop being measured)."""
    import sqlite3

    from gossamer.store import SQLITE_FILE
    db = sqlite3.connect(f"file:{zone.data_dir / SQLITE_FILE}?mode=ro", uri=True)
    try:
        marks = ",".join("?" * len(POLICY_KINDS))
        row = db.execute(f"SELECT count(*) FROM resources WHERE mesh = 'default' AND kind IN "
                         f"({marks})", POLICY_KINDS).fetchone()
        return int(row[0])
    finally:
        db.close()


def settle(pid: int, window: float = 0.5, busy: float = 0.15, deadline: float = 900.0
           ) -> float:
    """Wait until process ``pid`` uses less than ``busy`` of a core over ``window``
    seconds (its reaction to a change is over); the monotonic time that window began."""
    until = time.monotonic() + deadline
    while time.monotonic() < until:
        start, cpu = time.monotonic(), cpu_seconds(pid)
        time.sleep(window)
        if cpu_seconds(pid) - cpu < busy * window:
            return start
    raise RuntimeError(f"process {pid} still busy after {deadline}s")
