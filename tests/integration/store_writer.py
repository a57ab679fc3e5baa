"""One OS process writing to a store while another does the same: the worker of
``test_store_contract_processes.py``.

Run as ``python -m tests.integration.store_writer URL DATA_DIR NAME SEED SINCE``. It opens
its own ``Store`` on ``URL``, starts watching after revision ``SINCE`` and prints
``ready``; on ``go`` (a line on stdin) it runs two writing tasks of random operations on
keys it shares with the other process (creates that race, updates and deletes with the
version it read, batches mixing them, a counter incremented read-modify-write) and on
keys of its own. It records every write the store acknowledged and every refusal, prints
``done <revision>``, and on ``final <revision>`` waits until its watch has reached that
revision and prints one JSON line: the acknowledged writes, the refusals and the events
its watch saw, in the order it saw them (``at``: the event's revision; the rest: the
resource as stored, for a delete as it was last stored).

The ledger keeps what the parent checks the contract with: for a create or update, the
revision and version the store gave it; for a delete (which learns no revision), the
name, version and creation time of what it removed.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gossamer.errors import AlreadyExists, Conflict, NotFound
from gossamer.model.base import Resource
from gossamer.model.registry import parse_document
from gossamer.store import open_store
from gossamer.store.base import Create, Delete, Event, Store, Update, WriteOp

SHARED = [f"s-{i}" for i in range(6)]
COUNTER = "counter"
STEPS = 60  # per writing task
WAIT = 30.0  # seconds the watch may take to reach the final revision


def policy(name: str, **labels: str) -> Resource:
    return parse_document(
        {
            "type": "MeshTimeout",
            "name": name,
            "mesh": "default",
            "labels": labels,
            "spec": {
                "targetRef": {"kind": "Mesh"},
                "to": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": "5s"}}],
            },
        }
    )


def stamp(res: Resource) -> dict[str, Any]:
    """What identifies one stored state of a resource."""
    created = res.meta.creation_time
    return {
        "name": res.name,
        "version": res.meta.version,
        "revision": res.meta.revision,
        "labels": dict(res.labels),
        "created": created.isoformat() if created else None,
    }


@dataclass
class Ledger:
    who: str
    acked: list[dict[str, Any]] = field(default_factory=list)
    refused: dict[str, int] = field(default_factory=dict)
    increments: int = 0
    serial: int = 0

    def ack(self, op: WriteOp, result: Resource | None) -> None:
        assert result is not None
        kind = type(op).__name__.lower()
        self.acked.append({"op": kind, **stamp(result)})

    def refuse(self, error: Exception) -> None:
        name = type(error).__name__
        self.refused[name] = self.refused.get(name, 0) + 1

    def fresh(self) -> str:
        self.serial += 1
        return f"{self.who}-{self.serial}"


async def version_of(store: Store, name: str) -> int | None:
    try:
        return (await store.get("MeshTimeout", name, "default")).meta.version
    except NotFound:
        return None


async def step(store: Store, ledger: Ledger, rng: random.Random) -> None:
    """One random operation; refusals the contract allows are counted, never raised."""
    roll = rng.random()
    ops: list[WriteOp]
    if roll < 0.2:
        ops = [Create(policy(ledger.fresh()))]
    elif roll < 0.35:
        ops = [Create(policy(rng.choice(SHARED), by=ledger.who))]
    elif roll < 0.55:
        name = rng.choice(SHARED)
        seen = await version_of(store, name)
        ops = [Update(policy(name, by=ledger.who, n=str(rng.random())), seen or 1)]
    elif roll < 0.65:
        name = rng.choice(SHARED)
        ops = [Delete("MeshTimeout", name, "default", await version_of(store, name))]
    elif roll < 0.8:
        name = rng.choice(SHARED)
        seen = await version_of(store, name)
        ops = [
            Create(policy(ledger.fresh())),
            Update(policy(name, by=ledger.who, batch="yes"), seen or 1),
            Create(policy(ledger.fresh())),
        ]
    else:
        await increment(store, ledger)
        return
    try:
        results = await store.write(ops)
    except (AlreadyExists, Conflict, NotFound) as exc:
        ledger.refuse(exc)
        return
    for op, result in zip(ops, results, strict=True):
        ledger.ack(op, result)


async def increment(store: Store, ledger: Ledger) -> None:
    """Read the counter and write it plus one at the version read, until it lands."""
    while True:
        current = await store.get("MeshTimeout", COUNTER, "default")
        n = int(current.labels["n"]) + 1
        op = Update(policy(COUNTER, n=str(n)), current.meta.version)
        try:
            (result,) = await store.write([op])
        except Conflict as exc:
            ledger.refuse(exc)
            continue
        ledger.ack(op, result)
        ledger.increments += 1
        return


async def watching(store: Store, since: int, seen: list[Event]) -> None:
    async for event in store.watch(since):
        seen.append(event)


async def reached(seen: list[Event], revision: int) -> None:
    while not seen or seen[-1].revision < revision:
        await asyncio.sleep(0.01)


async def line() -> str:
    return (await asyncio.to_thread(sys.stdin.readline)).strip()


async def main(url: str, data_dir: Path, who: str, seed: int, since: int) -> None:
    store = await open_store(url, data_dir)
    seen: list[Event] = []
    watch = asyncio.create_task(watching(store, since, seen))
    ledger = Ledger(who)
    print("ready", flush=True)
    assert await line() == "go"

    async def writer(rng: random.Random) -> None:
        for _ in range(STEPS):
            await step(store, ledger, rng)

    await asyncio.gather(*(writer(random.Random(seed * 10 + i)) for i in range(2)))
    print(f"done {await store.revision()}", flush=True)
    final = int((await line()).split()[1])
    await asyncio.wait_for(reached(seen, final), WAIT)
    watch.cancel()
    await store.close()
    events = [{"at": e.revision, "type": str(e.type), **stamp(e.resource)} for e in seen]
    print(
        json.dumps(
            {
                "acked": ledger.acked,
                "refused": ledger.refused,
                "increments": ledger.increments,
                "events": events,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    url, data_dir, who, seed, since = sys.argv[1:6]
    asyncio.run(main(url, Path(data_dir), who, int(seed), int(since)))
