"""A zone CP answers /healthz and a single GET while it applies a batch of a few thousand
policies in one ``POST /_apply``, and a batch is still all or nothing.

The zone CP is a separate process (``gossamer zone run``, standalone, SQLite), as in
production, and the probes run in a thread of their own, so neither the test's loop nor
its JSON encoding can delay them. Validation used to hold the loop for the whole batch
(and searched repeated keys pairwise: quadratic, 3 s at 10,000 documents); it now yields
every 100 documents (``tests/unit/test_batch_parse.py`` shows that mechanism alone).

The bound, ``BOUND`` (1 s for the slowest probe), is wall time as a client sees it,
which a loaded shared 2-core CI machine inflates (preemption, the SQLite writer thread
and gRPC's threads competing for the GIL): the issue's 100 ms is checked on the loop's
own CPU per iteration, which load does not inflate, by
``test_api_batch_loop_turns.py`` (a full batch of 10,000); ``tests/bench/
bench_policies.py`` reports the real p50/p99/max.
The full-size refusal below uses ``MAX_BATCH`` documents.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from gossamer.resources import MAX_BATCH
from tests.waiting import ready

GOSSAMER = Path(sys.executable).parent / "gossamer"
BOUND = 1.0
COUNT = 3_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Zone:
    url: str
    headers: dict[str, str]


@pytest.fixture
def zone(tmp_path: Path) -> Iterator[Zone]:
    data, log = tmp_path / "zone", tmp_path / "zone.log"
    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(GOSSAMER), "zone", "run", "--zone", "lab", "--data-dir", str(data),
             "--api-addr", f"127.0.0.1:{port}", "--xds-addr", f"127.0.0.1:{free_port()}",
             "--store", "sqlite", "--log-level", "warning"],
            stdout=out, stderr=out, env={**os.environ, "GOSSAMER_CONFIG": str(tmp_path / "c")})
    try:
        url = f"http://127.0.0.1:{port}"
        ready(proc, url, log, timeout=60)
        token = (data / "admin-token").read_text().strip()
        yield Zone(url, {"Authorization": f"Bearer {token}"})
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def policy(i: int) -> dict[str, Any]:
    """A MeshTrafficPermission for one service pair, as GitOps batches carry them."""
    return {"type": "MeshTrafficPermission", "name": f"allow-{i}", "mesh": "default",
            "spec": {"targetRef": {"kind": "MeshService", "name": f"svc-{i % 997}"},
                     "from": [{"targetRef": {"kind": "MeshService",
                                             "name": f"caller-{i // 997}"},
                               "default": {"action": "Allow"}}]}}


@dataclass
class Probes:
    """GETs each path in turn every 20 ms from a thread; every latency and status."""

    zone: Zone
    paths: tuple[str, ...]
    seen: dict[str, list[tuple[float, int]]] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(base_url=self.zone.url, headers=self.zone.headers,
                          timeout=30) as http:
            while not self.stop.is_set():
                for path in self.paths:
                    start = time.perf_counter()
                    status = http.get(path).status_code
                    self.seen.setdefault(path, []).append(
                        (time.perf_counter() - start, status))
                self.stop.wait(0.02)


def test_healthz_and_a_get_answer_while_a_full_batch_applies(zone: Zone) -> None:
    body = json.dumps({"documents": [policy(i) for i in range(COUNT)]}).encode()
    paths = ("/healthz", "/meshes/default")
    with httpx.Client(base_url=zone.url, headers=zone.headers, timeout=600) as http:
        for path in paths:  # a route's first request builds its FastAPI state: not measured
            assert http.get(path).status_code == 200
        probes = Probes(zone, paths)
        thread = threading.Thread(target=probes.run, daemon=True)
        thread.start()
        try:
            r = http.post("/_apply", content=body,
                          headers={"content-type": "application/json"})
        finally:
            probes.stop.set()
            thread.join()
        assert r.status_code == 200, r.text[:500]
        assert len(r.json()["results"]) == COUNT
        page = http.get("/meshes/default/meshtrafficpermissions", params={"size": 1})
        assert page.json()["total"] == COUNT + 1  # and the bootstrap's allow-all
    for path in paths:
        seen = probes.seen[path]
        assert len(seen) >= 10, f"{path}: only {len(seen)} probes during the batch"
        assert {status for _, status in seen} == {200}
        slowest = max(latency for latency, _ in seen)
        assert slowest < BOUND, f"{path} took {slowest * 1000:.0f} ms during the batch"


def test_a_refused_document_in_a_full_batch_stores_none_of_it(zone: Zone) -> None:
    docs = [policy(i) for i in range(MAX_BATCH)]
    docs[MAX_BATCH // 2] = {**docs[MAX_BATCH // 2], "name": "Not A Name"}
    docs[-1] = policy(0)
    with httpx.Client(base_url=zone.url, headers=zone.headers, timeout=600) as http:
        r = http.post("/_apply", json={"documents": docs})
        assert r.status_code == 400, r.text[:500]
        problems = [e["field"] for e in r.json()["fieldErrors"]]
        assert problems[0].startswith(f"documents[{MAX_BATCH // 2}]")
        assert problems[-1] == f"documents[{MAX_BATCH - 1}]"
        page = http.get("/meshes/default/meshtrafficpermissions", params={"size": 1})
        assert page.json()["total"] == 1
