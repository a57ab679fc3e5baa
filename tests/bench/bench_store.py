"""Benchmark: apply and list 10,000 MeshTimeout policies on each store.

Run ``.venv/bin/python -m tests.bench.bench_store``. For every backend it creates
``--count`` policies one write at a time (each its own transaction, as the API does),
then lists them all twice in pages of ``--page-size`` (the first listing decodes every
row; the second finds them in the store's decode cache), and prints a markdown table:
time per create and per listed resource, and the ratio to the memory store measured in
the same run (the reference). Postgres runs on a throwaway cluster from ``tests/pg.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gossamer.model.base import Resource
from gossamer.model.registry import parse_document
from gossamer.store import open_store
from gossamer.store.base import ListQuery, Store
from tests.pg import PostgresCluster, PostgresUnavailable


@dataclass(frozen=True)
class Result:
    backend: str
    count: int
    create_s: float
    list_s: float  # the first full listing: every row decoded
    relist_s: float  # the second: rows the store has decoded before

    @property
    def create_us(self) -> float:
        return self.create_s / self.count * 1e6

    @property
    def list_us(self) -> float:
        return self.list_s / self.count * 1e6

    @property
    def relist_us(self) -> float:
        return self.relist_s / self.count * 1e6


def policies(count: int) -> list[Resource]:
    return [parse_document({
        "type": "MeshTimeout", "name": f"timeout-{i:05d}", "mesh": "default",
        "labels": {"team": f"team-{i % 10}"},
        "spec": {"targetRef": {"kind": "MeshService", "name": f"svc-{i % 100}"},
                 "to": [{"targetRef": {"kind": "Mesh"},
                         "default": {"connectionTimeout": "2s", "idleTimeout": "1h",
                                     "http": {"requestTimeout": "15s"}}}]},
    }) for i in range(count)]


async def run_one(backend: str, url: str, data_dir: Path, items: list[Resource],
                  page_size: int) -> Result:
    store = await open_store(url, data_dir)
    try:
        start = time.perf_counter()
        for res in items:
            await store.create(res)
        created = time.perf_counter()
        await list_all(store, page_size, len(items))
        listed = time.perf_counter()
        await list_all(store, page_size, len(items))
        relisted = time.perf_counter()
    finally:
        await store.close()
    return Result(backend, len(items), created - start, listed - created, relisted - listed)


async def list_all(store: Store, page_size: int, expected: int) -> None:
    seen, token = 0, None
    while True:
        page = await store.list(ListQuery(kind="MeshTimeout", limit=page_size,
                                          page_token=token))
        seen += len(page.items)
        token = page.next_token
        if token is None:
            break
    if seen != expected:
        raise AssertionError(f"listed {seen} of {expected}")


def table(results: list[Result]) -> str:
    ref = results[0]
    lines = ["| store | create µs/op | vs memory | list µs/resource, first | vs memory "
             "| list µs/resource, again | vs memory |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r.backend} | {r.create_us:,.1f} | {r.create_us / ref.create_us:,.1f} "
                     f"| {r.list_us:,.1f} | {r.list_us / ref.list_us:,.1f} "
                     f"| {r.relist_us:,.1f} | {r.relist_us / ref.relist_us:,.1f} |")
    return "\n".join(lines)


def machine() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"nproc {os.cpu_count()}, Python {platform.python_version()}, "
            f"SQLite {sqlite3.sqlite_version}, {platform.system()} {platform.release()}, "
            f"load average at start {load}")


@contextmanager
def postgres_url(wanted: bool) -> Iterator[str | None]:
    if not wanted:
        yield None
        return
    try:
        cluster = PostgresCluster.create()
    except PostgresUnavailable as exc:
        print(f"postgres skipped: {exc}", file=sys.stderr)
        yield None
        return
    try:
        version = cluster.psql("SHOW server_version").strip()
        print(f"PostgreSQL {version}: a throwaway cluster from tests/pg.py (fsync=off), "
              "reached over its unix socket\n")
        yield cluster.create_database("bench")
    finally:
        cluster.destroy()


async def main(args: argparse.Namespace) -> None:
    items = policies(args.count)
    print(f"Store: create {args.count:,} MeshTimeouts, list them in pages of "
          f"{args.page_size} ({machine()})\n")
    results = []
    with tempfile.TemporaryDirectory(prefix="gossamer-bench-") as tmp, \
            postgres_url("postgres" in args.backends) as pg_url:
        urls = {"memory": "memory", "sqlite": f"sqlite://{tmp}/store.db", "postgres": pg_url}
        for backend in ["memory", *[b for b in args.backends if b != "memory"]]:
            url = urls[backend]
            if url is None:
                continue
            results.append(await run_one(backend, url, Path(tmp), items, args.page_size))
            print(f"  {backend}: done", file=sys.stderr)
    print(table(results))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--backends", nargs="+", default=["memory", "sqlite", "postgres"],
                        choices=["memory", "sqlite", "postgres"])
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
