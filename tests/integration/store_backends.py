"""The store backends the store contract runs against: memory, SQLite, PostgreSQL (the
``backend`` fixture, parametrized over them, is in ``tests/integration/conftest.py``).

Each backend is opened through ``open_store``. ``Backend.open()`` opens one more store on
the same storage — the same file or database, as a second process would — except for
memory, which has no storage beyond its one instance and hands that instance out again.
``collect`` bounds waits on watches with ``asyncio.wait_for``; nothing sleeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gossamer.model.base import Resource
from gossamer.model.registry import parse_document
from gossamer.store import open_store
from gossamer.store.base import Event, Store

WAIT = 15.0  # seconds any one expected event may take


def mesh(name: str, **labels: str) -> Resource:
    return parse_document({"type": "Mesh", "name": name, "labels": labels})


def timeout(name: str, mesh: str = "default", labels: dict[str, str] | None = None,
            idle: str = "5s") -> Resource:
    return parse_document({
        "type": "MeshTimeout", "name": name, "mesh": mesh, "labels": labels or {},
        "spec": {"targetRef": {"kind": "Mesh"},
                 "to": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": idle}}]},
    })


@dataclass
class Backend:
    name: str
    url: str
    data_dir: Path
    opened: list[Store] = field(default_factory=list)

    async def open(self, **options: Any) -> Store:
        if self.name == "memory" and self.opened:
            return self.opened[0]
        store = await open_store(self.url, self.data_dir, **options)
        self.opened.append(store)
        return store

    async def close_all(self) -> None:
        for store in self.opened:
            await store.close()


async def collect(events: AsyncIterator[Event], count: int) -> list[Event]:
    async def take() -> list[Event]:
        return [await anext(events) for _ in range(count)]

    return await asyncio.wait_for(take(), WAIT)

