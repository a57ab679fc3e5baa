"""The SQLite store's writer: one connection, one thread, whole batches at a time.

Every write runs in the writer's own thread as one call: ``BEGIN IMMEDIATE``, one
statement per op, ``COMMIT``; a refused op raises, which rolls back the whole batch
before the exception leaves the thread. A hop to the thread costs tens of microseconds,
as much as the statement itself, so a batch of n ops costs one hop instead of n (a
10,000-resource zone resync was mostly such hops). Since the thread runs one call at a
time, no other write lands inside a batch.

The op functions speak rows, not resources: the thread does no decoding, and the
store's event loop side turns each ``Outcome`` into the ``Resource`` to return.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from gossamer.errors import Conflict, GossamerError, NotFound, StoreUnavailable
from gossamer.model.base import Meta, Resource
from gossamer.store import codec
from gossamer.store.base import Create, Delete, Put, Update, WriteOp

T = TypeVar("T")

COLUMNS = ("kind, mesh, name, labels, spec, version, creation_time, modification_time, "
           "revision")
KEY = "kind = ? AND mesh = ? AND name = ?"
_NEXT = "(SELECT value + 1 FROM counters WHERE name = 'revision')"
_INSERT = f"INSERT INTO resources ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, {_NEXT}) "
_PUT = (_INSERT + "ON CONFLICT (kind, mesh, name) DO UPDATE SET labels = excluded.labels, "
        "spec = excluded.spec, version = resources.version + 1, "
        "modification_time = excluded.modification_time, revision = excluded.revision "
        # Equal content leaves the row alone: no version bump, no trigger, no event.
        "WHERE resources.labels IS NOT excluded.labels OR resources.spec IS NOT excluded.spec "
        "RETURNING version, creation_time, revision")


@dataclass(frozen=True)
class Outcome:
    """What one op did: the new meta of a written resource, or a stored row as it is
    (a delete's last state, an unchanged ``Put``), or nothing (a delete of nothing)."""

    meta: tuple[int, str, int] | None = None  # version, creation time, revision
    row: tuple[Any, ...] | None = None


class Writer:
    """A sqlite3 connection used only from its one worker thread."""

    def __init__(self, conn: sqlite3.Connection, pool: ThreadPoolExecutor) -> None:
        self._conn = conn
        self._pool = pool

    @classmethod
    async def open(cls, path: Path, setup: Callable[[sqlite3.Connection], None]) -> Writer:
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")

        def connect() -> sqlite3.Connection:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            try:
                setup(conn)
            except BaseException:
                conn.close()
                raise
            return conn

        try:
            conn = await asyncio.get_running_loop().run_in_executor(pool, connect)
        except BaseException:
            pool.shutdown(wait=False)
            raise
        return cls(conn, pool)

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(connection)`` in the writer thread."""
        try:
            pending = asyncio.get_running_loop().run_in_executor(self._pool, fn, self._conn)
        except RuntimeError:  # the pool is shut down: a write racing close()
            raise StoreUnavailable("the store is closed") from None
        return await pending

    async def write(self, ops: Sequence[WriteOp], now: datetime) -> tuple[list[Outcome], int]:
        """The batch's outcomes, and the store's revision after it (read in the same
        call: the thread runs one call at a time, so no other write came between)."""
        return await self.run(lambda conn: (write_batch(conn, ops, now), revision_of(conn)))

    async def revision(self) -> int:
        return await self.run(revision_of)

    async def close(self) -> None:
        await self.run(lambda conn: conn.close())
        self._pool.shutdown(wait=False)


def write_batch(conn: sqlite3.Connection, ops: Sequence[WriteOp],
                now: datetime) -> list[Outcome]:
    """All of ``ops`` in one transaction, or (raising the first refusal) none."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        outcomes = [_write_op(conn, op, now) for op in ops]
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return outcomes


def revision_of(conn: sqlite3.Connection) -> int:
    """The store-wide revision as committed."""
    return int(conn.execute("SELECT value FROM counters WHERE name = 'revision'").fetchone()[0])


def _write_op(conn: sqlite3.Connection, op: WriteOp, now: datetime) -> Outcome:
    if isinstance(op, Delete):
        return _delete(conn, op)
    res = op.resource
    if isinstance(op, Update):
        rows = conn.execute(
            f"UPDATE resources SET labels = ?, spec = ?, version = version + 1, "
            f"modification_time = ?, revision = {_NEXT} WHERE {KEY} AND version = ? "
            "RETURNING version, creation_time, revision",
            (codec.labels_json(res), codec.spec_json(res), codec.format_time(now),
             res.type, res.mesh, res.name, op.expected_version)).fetchall()
        if not rows:
            raise _refusal(conn, res.type, res.name, res.mesh, op.expected_version)
        return Outcome(meta=tuple(rows[0]))
    values = row_values(res, now)
    if isinstance(op, Create):
        rows = conn.execute(_INSERT + "ON CONFLICT (kind, mesh, name) DO NOTHING "
                            "RETURNING version, creation_time, revision", values).fetchall()
        if not rows:
            raise codec.already_exists(res.type, res.name, res.mesh)
        return Outcome(meta=tuple(rows[0]))
    assert isinstance(op, Put)
    rows = conn.execute(_PUT, values).fetchall()
    if rows:
        return Outcome(meta=tuple(rows[0]))
    return Outcome(row=tuple(conn.execute(f"SELECT {COLUMNS} FROM resources WHERE {KEY}",
                                          (res.type, res.mesh, res.name)).fetchone()))


def _delete(conn: sqlite3.Connection, op: Delete) -> Outcome:
    rows = conn.execute(
        "DELETE FROM resources WHERE kind = ?1 AND mesh = ?2 AND name = ?3 "
        f"AND (?4 IS NULL OR version = ?4) RETURNING {COLUMNS}",
        (op.kind, op.mesh, op.name, op.expected_version)).fetchall()
    if rows:
        return Outcome(row=tuple(rows[0]))
    refusal = _refusal(conn, op.kind, op.name, op.mesh, op.expected_version)
    if op.missing_ok and isinstance(refusal, NotFound):
        return Outcome()
    raise refusal


def _refusal(conn: sqlite3.Connection, kind: str, name: str, mesh: str,
             expected: int | None) -> GossamerError:
    """Why a checked write matched no row: the resource is gone, or it moved on."""
    row = conn.execute(f"SELECT version FROM resources WHERE {KEY}",
                       (kind, mesh, name)).fetchone()
    if row is None:
        return codec.not_found(kind, name, mesh)
    if expected is None:  # cannot happen inside one transaction; said plainly if it does
        return Conflict(f"{codec.describe(kind, name, mesh)} changed while it was being "
                        "deleted; retry")
    return codec.stale(kind, name, mesh, expected, int(row[0]))


def row_values(res: Resource, now: datetime) -> tuple[Any, ...]:
    """The first eight columns of a new row for ``res`` (the revision comes from SQL)."""
    stamp = codec.format_time(now)
    return (res.type, res.mesh, res.name, codec.labels_json(res), codec.spec_json(res),
            1, stamp, stamp)


def written(res: Resource, outcome: Outcome, now: datetime) -> Resource:
    """``res`` with the meta its write gave it."""
    assert outcome.meta is not None
    version, created, revision = outcome.meta
    return res.with_meta(Meta(version=int(version), creation_time=codec.parse_time(created),
                              modification_time=now, revision=int(revision)))
