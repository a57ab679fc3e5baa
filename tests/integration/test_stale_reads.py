"""Single reads of the API come from the control plane's view of its store (issues 15, 18).

- Read-your-writes through the HTTP API, at a standalone zone CP and at a global (SQLite):
  a GET (and a list) right after a PUT, a DELETE or a whole ``_apply`` batch returned sees
  it, with no retry, while other batches are being applied meanwhile.
- A global and a zone CP on a real PostgreSQL that is stopped, then started again: single
  reads and lists answer from the view with ``Gossamer-Stale: <reason>; since <time>`` (a
  missing resource is a 404 that says so too), in time; ``gossamer get`` prints a one-line notice
  on stderr and the resource on stdout; once the database is back, reads are fresh (no
  header) and see the writes made after the outage at once.
- Two global replicas on one PostgreSQL: a GET at one sees a write that returned at the
  other.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from gossamer.settings import ZoneSettings
from tests.integration.cli_env import GOSSAMER, _clean_env
from tests.integration.federation_env import Planes, timeout_policy
from tests.integration.test_global_replicas import start_global as start_replica
from tests.pg import PostgresCluster
from tests.waiting import eventually
from zone_cp.app import ZoneControlPlane

ANSWER_WITHIN = 2.0  # seconds, for a read while the database is down
TIMEOUTS = "/meshes/default/meshtimeouts"


def client(url: str, data_dir: Path) -> httpx.AsyncClient:
    token = (data_dir / "admin-token").read_text().strip()
    return httpx.AsyncClient(base_url=url, timeout=60, headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
async def zone(tmp_path: Path) -> AsyncIterator[ZoneControlPlane]:
    cp = ZoneControlPlane(
        ZoneSettings(
            zone="lab",
            data_dir=tmp_path / "zone",
            api_addr="127.0.0.1:0",
            xds_addr="127.0.0.1:0",
            store="sqlite",
        )
    )
    await cp.start()
    try:
        yield cp
    finally:
        await cp.stop()


def batch(prefix: str, count: int, seconds: int) -> dict[str, Any]:
    return {
        "documents": [
            {**timeout_policy(f"{prefix}-{i}", seconds), "labels": {"batch": prefix}}
            for i in range(count)
        ]
    }


async def reads_its_writes(c: httpx.AsyncClient) -> None:
    """PUT, DELETE and ``_apply`` each followed at once by the GET that must see them,
    while batches of 1,000 policies are applied by another client meanwhile."""

    async def background() -> None:
        for round_ in range(3):
            r = await c.post("/_apply", json=batch(f"bg{round_}", 1000, 3 + round_))
            assert r.status_code == 200, r.text

    busy = asyncio.create_task(background())
    try:
        for i in range(40):
            seconds = 1 + i % 7
            put = await c.put(f"{TIMEOUTS}/mine", json=timeout_policy("mine", seconds))
            assert put.status_code in (200, 201), put.text
            got = await c.get(f"{TIMEOUTS}/mine")
            assert got.status_code == 200 and "gossamer-stale" not in got.headers
            assert got.json()["version"] == put.json()["version"], (got.json(), put.json())
            assert got.json()["spec"] == put.json()["spec"]
            if i % 10 == 9:
                assert (await c.delete(f"{TIMEOUTS}/mine")).status_code == 200
                assert (await c.get(f"{TIMEOUTS}/mine")).status_code == 404
                applied = await c.post("/_apply", json=batch(f"b{i}", 200, seconds))
                assert applied.status_code == 200, applied.text
                listed = await c.get(TIMEOUTS, params={"labels": f"batch=b{i}", "size": 1})
                assert listed.status_code == 200 and listed.json()["total"] == 200, listed.text
                last = await c.get(f"{TIMEOUTS}/b{i}-199")
                assert last.status_code == 200, last.text
        await asyncio.wait_for(busy, 300)
        last_bg = await c.get(f"{TIMEOUTS}/bg2-999")
        assert last_bg.status_code == 200, last_bg.text
        assert last_bg.json()["spec"]["to"][0]["default"] == {"http": {"requestTimeout": "5s"}}
    finally:
        busy.cancel()
        await asyncio.gather(busy, return_exceptions=True)


async def test_a_zone_reads_its_writes_through_the_api(zone: ZoneControlPlane) -> None:
    async with client(zone.api_url, zone.settings.directory) as c:
        await reads_its_writes(c)


async def test_a_global_reads_its_writes_through_the_api(planes: Planes) -> None:
    cp = await planes.global_cp()
    async with client(cp.api_url, cp.settings.data_dir) as c:
        await reads_its_writes(c)


def since_of(header: str) -> datetime:
    reason, sep, stamp = header.rpartition("; since ")
    assert sep and reason, header
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


async def stale_then_fresh(
    c: httpx.AsyncClient, cluster: PostgresCluster, cli: list[str] | None
) -> None:
    put = await c.put(f"{TIMEOUTS}/kept", json=timeout_policy("kept", 5))
    assert put.status_code in (200, 201), put.text
    fresh = await c.get(f"{TIMEOUTS}/kept")
    assert fresh.status_code == 200 and "gossamer-stale" not in fresh.headers
    stopped_at = datetime.now(UTC).replace(microsecond=0)
    cluster.stop()
    try:
        started = time.monotonic()
        read = await c.get(f"{TIMEOUTS}/kept")
        assert time.monotonic() - started < ANSWER_WITHIN
        assert read.status_code == 200, read.text
        assert read.json()["spec"] == put.json()["spec"]
        stale = read.headers["gossamer-stale"]
        assert "postgres" in stale, stale
        assert stopped_at <= since_of(stale) <= datetime.now(UTC), stale
        listed = await c.get(TIMEOUTS, params={"size": 1000})
        assert listed.status_code == 200, listed.text
        assert "kept" in {item["name"] for item in listed.json()["items"]}
        assert since_of(listed.headers["gossamer-stale"]) == since_of(stale)
        missing = await c.get(f"{TIMEOUTS}/never-written")
        assert missing.status_code == 404, missing.text
        assert since_of(missing.headers["gossamer-stale"]) == since_of(stale)
        refused = await c.put(f"{TIMEOUTS}/kept", json=timeout_policy("kept", 9))
        assert refused.status_code == 503
        if cli is not None:
            shown = await asyncio.to_thread(
                subprocess.run,
                [str(GOSSAMER), "get", "meshtimeout", "kept", "-o", "json"],
                capture_output=True,
                text=True,
                timeout=60,
                env=_clean_env(Path(cli[0])),
                check=False,
            )
            assert shown.returncode == 0, shown.stderr
            assert '"kept"' in shown.stdout
            notice = shown.stderr.strip().splitlines()
            assert len(notice) == 1 and "from its cache" in notice[0], shown.stderr
            assert "postgres" in notice[0] and "since" in notice[0], notice
            print(f"gossamer get said on stderr: {notice[0]}")
    finally:
        cluster.start()

    async def fresh_again() -> bool:
        r = await c.get(f"{TIMEOUTS}/kept")
        return r.status_code == 200 and "gossamer-stale" not in r.headers

    await eventually(fresh_again, timeout=20, interval=0.1, what="reads fresh again")

    async def written() -> httpx.Response | None:
        r = await c.put(f"{TIMEOUTS}/kept", json=timeout_policy("kept", 11))
        return r if r.status_code == 200 else None

    after = await eventually(written, timeout=20, interval=0.2, what="a write accepted again")
    got = await c.get(f"{TIMEOUTS}/kept")
    assert got.status_code == 200 and "gossamer-stale" not in got.headers
    assert got.json()["version"] == after.json()["version"]


@pytest.mark.postgres
async def test_a_global_on_postgres_answers_reads_stale_while_it_is_stopped(
    postgres_cluster: PostgresCluster, postgres_db_url: str, planes: Planes, tmp_path: Path
) -> None:
    cp = await planes.global_cp(store=postgres_db_url)
    config = tmp_path / "config.yaml"
    added = await asyncio.to_thread(
        subprocess.run,
        [
            str(GOSSAMER),
            "config",
            "control-planes",
            "add",
            "--name",
            "pg",
            "--address",
            cp.api_url,
            "--token-file",
            str(cp.settings.data_dir / "admin-token"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=_clean_env(config),
        check=False,
    )
    assert added.returncode == 0, added.stderr
    async with client(cp.api_url, cp.settings.data_dir) as c:
        await stale_then_fresh(c, postgres_cluster, [str(config)])


@pytest.mark.postgres
async def test_a_zone_on_postgres_answers_reads_stale_while_it_is_stopped(
    postgres_cluster: PostgresCluster, postgres_db_url: str, tmp_path: Path
) -> None:
    cp = ZoneControlPlane(
        ZoneSettings(
            zone="lab",
            data_dir=tmp_path / "zone",
            api_addr="127.0.0.1:0",
            xds_addr="127.0.0.1:0",
            store=postgres_db_url,
        )
    )
    await cp.start()
    try:
        async with client(cp.api_url, cp.settings.directory) as c:
            await stale_then_fresh(c, postgres_cluster, None)
    finally:
        await cp.stop()


@pytest.mark.postgres
def test_a_replica_reads_what_another_replica_wrote(postgres_db_url: str, tmp_path: Path) -> None:
    """Two global processes on one PostgreSQL: a GET at one right after a PUT or a DELETE
    at the other returned sees it (the read waits for the store's revision, not only for
    its own process's writes)."""
    first = start_replica(tmp_path, "a", postgres_db_url)
    second = start_replica(tmp_path, "b", postgres_db_url)
    try:
        token = (tmp_path / "a" / "admin-token").read_text().strip()
        auth = {"Authorization": f"Bearer {token}"}
        with (
            httpx.Client(base_url=first.api, headers=auth, timeout=30) as a,
            httpx.Client(base_url=second.api, headers=auth, timeout=30) as b,
        ):
            for i in range(30):
                put = a.put(f"{TIMEOUTS}/shared", json=timeout_policy("shared", 1 + i % 5))
                assert put.status_code in (200, 201), put.text
                got = b.get(f"{TIMEOUTS}/shared")
                assert got.status_code == 200, got.text
                assert got.json()["version"] == put.json()["version"], i
                assert "gossamer-stale" not in got.headers
            assert a.delete(f"{TIMEOUTS}/shared").status_code == 200
            assert b.get(f"{TIMEOUTS}/shared").status_code == 404
    finally:
        second.stop()
        first.stop()
