"""Faults in a federation over real gRPC with TLS: a global that is stopped and restarted,
or killed, and a global on PostgreSQL restarted with its database; the zones converge and
nothing is lost.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gossamer.model.registry import parse_document
from gossamer.resources import ResourceManager
from sync.applier import zone_scoped_name
from tests.builders import dataplane_doc
from tests.integration.federation_env import (
    BEAT,
    DEAD_AFTER,
    Planes,
    converged,
    get,
    online,
    ports,
    timeout_of,
    timeout_policy,
)
from tests.pg import PostgresCluster, free_port
from tests.waiting import eventually

REPO = Path(__file__).resolve().parents[2]


async def test_zones_converge_after_the_global_is_stopped_and_restarted(
        planes: Planes) -> None:
    global_cp = await planes.global_cp()
    manager = ResourceManager(global_cp.store)  # type: ignore[arg-type]
    await manager.apply(parse_document(timeout_policy("keep", 5)))
    await manager.apply(parse_document(timeout_policy("change", 5)))
    await manager.apply(parse_document(timeout_policy("drop", 5)))
    zones = [await planes.zone(global_cp, name) for name in ("east", "west", "north")]
    await eventually(lambda: converged(zones, {"keep": "5s", "change": "5s", "drop": "5s"}))
    api_port, sync_port = ports(global_cp)

    await planes.stop(global_cp)
    await eventually(lambda: not any(z.sync.status.connected for z in zones),
                     what="the zones to notice")
    global_cp = await planes.global_cp(api_port=api_port, sync_port=sync_port)
    manager = ResourceManager(global_cp.store)  # type: ignore[arg-type]
    await manager.apply(parse_document(timeout_policy("change", 9)))
    await manager.delete("MeshTimeout", "drop", "default")
    await manager.apply(parse_document(timeout_policy("new", 7)))

    await eventually(lambda: converged(zones, {"keep": "5s", "change": "9s", "drop": None,
                                               "new": "7s"}), what="the zones to converge")
    for zone in zones:
        await eventually(lambda z=zone: online(global_cp, z.settings.zone))


class GlobalProcess:
    """``gossamer global run`` as a real process, which a test can kill -9."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.api_port, self.sync_port = free_port(), free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / "global.log"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    async def start(self) -> None:
        gossamer_cmd = Path(sys.executable).parent / "gossamer"
        env = {**os.environ, "PYTHONPATH": str(REPO)}  # this checkout, whatever is installed
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [str(gossamer_cmd), "global", "run", "--data-dir", str(self.data_dir),
                 "--api-addr", f"127.0.0.1:{self.api_port}",
                 "--sync-addr", f"127.0.0.1:{self.sync_port}",
                 "--heartbeat-interval", f"{BEAT}s", "--heartbeat-timeout", f"{DEAD_AFTER}s"],
                env=env, stdout=log, stderr=subprocess.STDOUT)
        await eventually(self._ready, timeout=20, interval=0.05, what="the global process")

    async def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"the global exited: {self.log.read_text()[-2000:]}")
        async with httpx.AsyncClient(base_url=self.api_url) as client:
            return (await client.get("/readyz")).status_code == 200

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def client(self) -> httpx.AsyncClient:
        token = (self.data_dir / "admin-token").read_text().strip()
        return httpx.AsyncClient(base_url=self.api_url,
                                 headers={"Authorization": f"Bearer {token}"})

    async def put(self, doc: dict[str, Any]) -> None:
        async with self.client() as c:
            r = await c.put(f"/meshes/{doc['mesh']}/meshtimeouts/{doc['name']}", json=doc)
            assert r.status_code in (200, 201), r.text

    async def zone_token(self, zone: str, path: Path) -> Path:
        async with self.client() as c:
            r = await c.post("/tokens/zone", json={"zone": zone, "validFor": "1h"})
            assert r.status_code == 200, r.text
        path.write_text(r.json()["token"])
        return path


@pytest.fixture
def global_process(tmp_path: Path) -> Iterator[GlobalProcess]:
    process = GlobalProcess(tmp_path / "global")
    yield process
    process.kill()


async def test_zones_converge_after_the_global_process_is_killed(
        planes: Planes, global_process: GlobalProcess, tmp_path: Path) -> None:
    await global_process.start()
    await global_process.put(timeout_policy("slow", 5))
    ca = global_process.data_dir / "tls" / "ca.pem"
    zones = [await planes.zone(None, name, sync_port=global_process.sync_port, ca=ca,
                               token_file=await global_process.zone_token(
                                   name, tmp_path / f"{name}.token"))
             for name in ("east", "west")]
    await eventually(lambda: converged(zones, {"slow": "5s"}))

    global_process.kill()
    await eventually(lambda: not any(z.sync.status.connected for z in zones),
                     what="the zones to notice")
    await global_process.start()
    await global_process.put(timeout_policy("slow", 9))
    await global_process.put(timeout_policy("new", 7))
    await eventually(lambda: converged(zones, {"slow": "9s", "new": "7s"}), timeout=15,
                     what="the zones to converge")


@pytest.mark.postgres
async def test_a_global_on_postgres_restarted_with_its_database_loses_nothing(
        postgres_cluster: PostgresCluster, postgres_db_url: str, planes: Planes) -> None:
    # (planes after the database: fixtures are torn down in reverse, so the control
    # planes stop before the database is dropped)
    global_cp = await planes.global_cp(store=postgres_db_url)
    manager = ResourceManager(global_cp.store)  # type: ignore[arg-type]
    await manager.apply(parse_document(timeout_policy("slow", 5)))
    zones = [await planes.zone(global_cp, name) for name in ("east", "west")]
    await eventually(lambda: converged(zones, {"slow": "5s"}))
    await zones[0].manager.apply(parse_document(dataplane_doc("backend-1")))
    from_east = zone_scoped_name("east", "default", "backend-1")
    await eventually(lambda: get(global_cp, "Dataplane", from_east, "default"))
    api_port, sync_port = ports(global_cp)
    keys_before = set((await global_cp.zone_tokens.keys()).public)

    # The database first: the global stops while it is down (it used to hang there).
    postgres_cluster.stop()
    try:
        await planes.stop(global_cp)
    finally:
        postgres_cluster.start()
    global_cp = await planes.global_cp(store=postgres_db_url, api_port=api_port,
                                       sync_port=sync_port)

    # Nothing lost: policies, zones, what the zones sent, the keys their tokens need.
    assert await timeout_of(global_cp, "slow") == "5s"  # type: ignore[arg-type]
    assert await get(global_cp, "Zone", "east") and await get(global_cp, "Zone", "west")
    assert await get(global_cp, "Dataplane", from_east, "default")
    assert set((await global_cp.zone_tokens.keys()).public) == keys_before
    # The zones come back with the tokens they had, and converge on new changes.
    manager = ResourceManager(global_cp.store)  # type: ignore[arg-type]
    await manager.apply(parse_document(timeout_policy("slow", 9)))
    await eventually(lambda: converged(zones, {"slow": "9s"}), timeout=15)
    for zone in zones:
        await eventually(lambda z=zone: online(global_cp, z.settings.zone))
    await zones[1].manager.apply(parse_document(dataplane_doc("backend-2")))
    await eventually(lambda: get(global_cp, "Dataplane",
                                 zone_scoped_name("west", "default", "backend-2"), "default"))

