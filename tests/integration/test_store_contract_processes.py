"""The store contract (DESIGN §7) on PostgreSQL with two OS processes writing at once.

Two ``tests.integration.store_writer`` processes, each with its own ``Store`` on one
database, run random creates, updates and deletes at the versions they read, batches
and read-modify-write increments of one counter, on keys they share and keys of their
own, released together. Afterwards:

- revisions strictly increase with no gap: every acknowledged write has its own, and
  the store's revision is the sum of them;
- each process's watch saw every change exactly once, in the store's order, and both
  saw the same list; each event is one acknowledged write and each acknowledged write
  one event (a refused write made none);
- no lost update: the counter equals the increments acknowledged to both (optimistic
  concurrency refused every stale writer, who read again), and every version of every
  key was written by exactly one acknowledged write;
- the list equals the acknowledged writes folded in revision order.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from gossamer.model.base import Resource
from gossamer.store import open_store
from gossamer.store.base import ListQuery
from tests.integration.store_writer import COUNTER, policy, stamp

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).parents[2]
WAIT = 60.0  # seconds for a worker's next line


async def start(url: str, tmp: Path, who: str, seed: int, since: int) -> asyncio.subprocess.Process:
    err = open(tmp / f"{who}.err", "wb")  # noqa: SIM115 - the child writes it until it exits
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.integration.store_writer",
        url,
        str(tmp / who),
        who,
        str(seed),
        str(since),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=err,
        cwd=ROOT,
        limit=64 * 1024 * 1024,
    )
    err.close()
    return proc


async def read_line(proc: asyncio.subprocess.Process, tmp: Path, who: str) -> str:
    assert proc.stdout is not None
    raw = await asyncio.wait_for(proc.stdout.readline(), WAIT)
    if not raw:
        pytest.fail(f"worker {who} exited: {(tmp / f'{who}.err').read_text()}")
    return raw.decode().strip()


async def tell(proc: asyncio.subprocess.Process, text: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(f"{text}\n".encode())
    await proc.stdin.drain()


def key(entry: dict[str, Any]) -> tuple[Any, ...]:
    return (
        entry["name"],
        entry["version"],
        entry["revision"],
        entry["created"],
        tuple(sorted(entry["labels"].items())),
    )


def check_events(
    events: list[dict[str, Any]],
    acked: list[dict[str, Any]],
    since: int,
    final: int,
    state: dict[str, dict[str, Any]],
) -> dict[str, dict[str, Any]]:
    """Events and acknowledged writes match one to one; ``state`` (what was stored at
    ``since``) folded with them."""
    assert [e["at"] for e in events] == list(range(since + 1, final + 1))
    writes = {a["revision"]: a for a in acked if a["op"] != "delete"}
    assert len(writes) == len([a for a in acked if a["op"] != "delete"]), "a revision twice"
    deletes = Counter(key(a) for a in acked if a["op"] == "delete")
    for event in events:
        if event["type"] == "deleted":
            assert deletes[key(event)] > 0, f"a delete nobody was told of: {event}"
            deletes[key(event)] -= 1
            del state[event["name"]]
            continue
        ack = writes.pop(event["at"], None)
        assert ack is not None, f"an event no write was acknowledged for: {event}"
        assert key(ack) == key(event) and event["revision"] == event["at"]
        assert (event["type"] == "created") == (ack["op"] == "create")
        assert (event["name"] in state) == (event["type"] == "updated")
        if event["type"] == "updated":
            assert state[event["name"]]["version"] + 1 == event["version"], "a lost update"
        state[event["name"]] = event
    assert writes == {}, f"acknowledged writes with no event: {list(writes.values())[:3]}"
    assert +deletes == Counter(), f"acknowledged deletes with no event: {+deletes}"
    return state


async def test_two_processes_writing_at_once_keep_the_contract(
    postgres_db_url: str, tmp_path: Path
) -> None:
    store = await open_store(postgres_db_url, tmp_path / "parent")
    try:
        seeded = await store.create(policy(COUNTER, n="0"))
        since = await store.revision()
        names = ("a", "b")
        procs = [
            await start(postgres_db_url, tmp_path, who, seed, since)
            for seed, who in enumerate(names, start=1)
        ]
        try:
            for proc, who in zip(procs, names, strict=True):
                assert await read_line(proc, tmp_path, who) == "ready"
            for proc in procs:
                await tell(proc, "go")
            for proc, who in zip(procs, names, strict=True):
                assert (await read_line(proc, tmp_path, who)).startswith("done ")
            final = await store.revision()
            for proc in procs:
                await tell(proc, f"final {final}")
            reports = [
                json.loads(await read_line(p, tmp_path, w))
                for p, w in zip(procs, names, strict=True)
            ]
        finally:
            for proc in procs:
                if proc.returncode is None:
                    proc.kill()
                await proc.wait()

        acked = [entry for report in reports for entry in report["acked"]]
        assert len(acked) > 100, "too few writes to say anything"
        # The two really raced: each was refused by a write of the other.
        assert all(report["refused"].get("Conflict", 0) > 0 for report in reports), reports
        assert all(report["events"] == reports[0]["events"] for report in reports)
        state = check_events(reports[0]["events"], acked, since, final, {COUNTER: stamp(seeded)})

        increments = sum(report["increments"] for report in reports)
        counter = await store.get("MeshTimeout", COUNTER, "default")
        assert counter.labels["n"] == str(increments)
        assert counter.meta.version == increments + 1

        listed = (await store.list(ListQuery("MeshTimeout"))).items
        assert {r.name: described(r) for r in listed} == {
            name: (e["version"], e["revision"], e["labels"]) for name, e in state.items()
        }
    finally:
        await store.close()


def described(res: Resource) -> tuple[int, int, dict[str, str]]:
    return res.meta.version, res.meta.revision, dict(res.labels)
