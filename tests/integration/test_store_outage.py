"""A global on a real PostgreSQL that stops answering, then answers again.

- Stopped (``pg_ctl stop``): every API write answers 503 within 2 s with a message that
  names the database, reads and lists come from the view marked stale
  (``test_stale_reads`` has more), ``/readyz`` says why; once it is started again
  writes succeed without a restart, the zone receives them, and nothing written before
  is lost.
- Paused (SIGSTOP on every server process: what a partition or a frozen host looks like,
  no connection is refused): writes still answer 503 within 2 s instead of waiting for
  asyncpg's command timeout, and the global stops promptly while the database is paused
  (stopping it while its database was down used to hang).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from global_cp.app import GlobalControlPlane
from tests.integration.federation_env import Planes, converged, ports, timeout_policy
from tests.pg import PostgresCluster
from tests.waiting import eventually

ANSWER_WITHIN = 2.0  # seconds, for every API call while the database is down
STOP_WITHIN = 5.0


def api(cp: GlobalControlPlane) -> httpx.AsyncClient:
    token = (cp.settings.data_dir / "admin-token").read_text().strip()
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports(cp)[0]}", timeout=30,
                             headers={"Authorization": f"Bearer {token}"})


async def timed(call: Any) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await call
    return response, time.monotonic() - started


async def refused_in_time(c: httpx.AsyncClient, seconds: int) -> list[float]:
    """A write and a delete while the database is down: each a 503 with a message naming
    the database, in time; a read and a list are answered from the global's view, marked
    stale (``Gossamer-Stale`` naming the database), in time too. Returns how long each
    took."""
    took = []
    for call in (c.put("/meshes/default/meshtimeouts/slow", json=timeout_policy("slow", seconds)),
                 c.delete("/meshes/default/meshtimeouts/slow")):
        response, seconds_taken = await timed(call)
        assert response.status_code == 503, response.text
        body = response.json()
        assert body["title"] == "store unavailable" and "postgres" in body["detail"], body
        assert response.headers["retry-after"] == "1"
        assert seconds_taken < ANSWER_WITHIN, (seconds_taken, body)
        took.append(seconds_taken)
    for path in ("/meshes/default/meshtimeouts/slow", "/meshes/default/meshtimeouts"):
        response, seconds_taken = await timed(c.get(path))
        assert response.status_code == 200, response.text
        assert "slow" in response.text
        assert "postgres" in response.headers["gossamer-stale"], response.headers
        assert seconds_taken < ANSWER_WITHIN, seconds_taken
        took.append(seconds_taken)
    ready = (await c.get("/readyz")).json()
    assert "postgres" in ready["detail"], ready
    return took


@contextlib.contextmanager
def paused(cluster: PostgresCluster) -> Iterator[None]:
    """Every process of the cluster stopped with SIGSTOP (continued at the end)."""
    main = int((cluster.data_dir / "postmaster.pid").read_text().split()[0])
    children = subprocess.run(["pgrep", "-P", str(main)], capture_output=True, text=True,
                              check=False).stdout.split()
    pids = [main, *map(int, children)]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


@pytest.mark.postgres
async def test_writes_are_refused_in_time_while_the_database_is_stopped_and_then_recover(
        postgres_cluster: PostgresCluster, postgres_db_url: str, planes: Planes) -> None:
    global_cp = await planes.global_cp(store=postgres_db_url)
    zone = await planes.zone(global_cp, "east")
    async with api(global_cp) as c:
        assert (await c.put("/meshes/default/meshtimeouts/slow",
                            json=timeout_policy("slow", 5))).status_code in (200, 201)
        await eventually(lambda: converged([zone], {"slow": "5s"}))
        postgres_cluster.stop()
        try:
            took = await refused_in_time(c, 9)
        finally:
            postgres_cluster.start()
        print(f"503 after {max(took):.3f} s at most (stopped database)")

        async def written() -> bool:
            r = await c.put("/meshes/default/meshtimeouts/slow", json=timeout_policy("slow", 9))
            return r.status_code in (200, 201)

        await eventually(written, timeout=15, interval=0.2, what="a write accepted again")
        assert (await c.put("/meshes/default/meshtimeouts/new",
                            json=timeout_policy("new", 7))).status_code in (200, 201)
        await eventually(lambda: converged([zone], {"slow": "9s", "new": "7s"}), timeout=15,
                         what="the zone to receive what was written after the outage")
        assert (await c.get("/readyz")).status_code == 200


@pytest.mark.postgres
async def test_writes_are_refused_in_time_and_the_global_stops_while_the_database_is_paused(
        postgres_cluster: PostgresCluster, postgres_db_url: str, planes: Planes) -> None:
    global_cp = await planes.global_cp(store=postgres_db_url)
    zone = await planes.zone(global_cp, "east")
    api_port, sync_port = ports(global_cp)
    async with api(global_cp) as c:
        assert (await c.put("/meshes/default/meshtimeouts/slow",
                            json=timeout_policy("slow", 5))).status_code in (200, 201)
        await eventually(lambda: converged([zone], {"slow": "5s"}))
        with paused(postgres_cluster):
            # The first write finds the database silent; the ones after are refused at
            # once, the probes having marked it down.
            took = await refused_in_time(c, 9)
            started = time.monotonic()
            await planes.stop(global_cp)
            stopped = time.monotonic() - started
        print(f"503 after {max(took):.3f} s at most (paused database); stopped in "
              f"{stopped:.2f} s")
        assert stopped < STOP_WITHIN
    global_cp = await planes.global_cp(store=postgres_db_url, api_port=api_port,
                                       sync_port=sync_port)
    async with api(global_cp) as c:
        assert (await c.put("/meshes/default/meshtimeouts/slow",
                            json=timeout_policy("slow", 9))).status_code in (200, 201)
    await eventually(lambda: converged([zone], {"slow": "9s"}), timeout=15)
