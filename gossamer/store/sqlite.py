"""The SQLite store: the embedded default, one file and no server (DESIGN §7).

Theory of operation. Three tables (``sqlite_schema``): ``resources`` (one row per
resource, primary key ``(kind, mesh, name)``), ``events`` (one row per write, keyed by revision) and
``counters`` (the store-wide revision). Every write is a single SQL statement, and so
one transaction: the ``INSERT``/``UPDATE``/``DELETE`` of the resource carries its own
version check (``WHERE version = ?``) and takes the next revision, and triggers in the
same statement bump the counter, append the event and compact events that fell out of
the retention window. The triggers are TEMP triggers, created by each store's writer
connection with its own retention, so the file holds data only. SQLite's write lock
serializes writers across connections and processes and a refused write changes
nothing, so revisions are contiguous and commit in order: a watcher that sees revision
``n + 2`` right after ``n`` knows that ``n + 1`` was compacted.

One statement per write matters because each aiosqlite call is a round trip to the
connection's thread (~0.1 ms): a BEGIN … COMMIT transaction of five statements costs
several times more than the statement itself. A batch (``write``) is the exception: its
statements run between ``BEGIN IMMEDIATE`` and ``COMMIT`` (one statement per op, the same
ones), and a refused op rolls all of them back. Since a transaction belongs to the
connection, not to a task, every write takes ``_write_lock``, so no other task's
statement lands inside a batch.

Each store holds two connections: a writer and a reader, which in WAL mode sees only
committed data and never waits for the writer.

``watch`` replays events from the table, then sleeps on an ``asyncio.Condition`` that
every write through *this* store notifies: no polling tick. Writes made through
another ``SqliteStore`` on the same file (another process) notify nobody here, so by
default such a watcher sees them only when a local write wakes it. With
``cross_process=True`` watchers also re-read the events table every ``poll_interval``
seconds: a short bounded poll, off by default, for deployments that share the file.
"""

from __future__ import annotations

import asyncio
import builtins
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from gossamer.errors import Conflict, NotFound, RevisionCompacted, StoreUnavailable
from gossamer.model.base import Meta, Resource
from gossamer.store import codec
from gossamer.store.base import (
    EVENT_RETENTION,
    Create,
    Delete,
    Event,
    EventType,
    ListQuery,
    Page,
    Put,
    Update,
    WriteOp,
    page_token,
)
from gossamer.store.sqlite_schema import SCHEMA, triggers

BUSY_TIMEOUT_MS = 10_000
WATCH_BATCH = 1000

_COLUMNS = ("kind, mesh, name, labels, spec, version, creation_time, modification_time, "
            "revision")
_KEY = "kind = ? AND mesh = ? AND name = ?"
_NEXT = "(SELECT value + 1 FROM counters WHERE name = 'revision')"


class SqliteStore:
    """A ``Store`` in one SQLite file; open it with ``await SqliteStore.open(path)``."""

    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection,
                 cross_process: bool, poll_interval: float) -> None:
        self._writer = writer
        self._reader = reader
        self._poll_interval = poll_interval if cross_process else None
        self._read_lock = asyncio.Lock()
        self._write_lock = asyncio.Lock()
        self._changed = asyncio.Condition()
        self._writes = 0  # writes committed through this store, for waking watchers
        self._closed = False
        self._decoded = codec.DecodeCache()

    @classmethod
    async def open(cls, path: Path | str, *, retention: int = EVENT_RETENTION,
                   cross_process: bool = False, poll_interval: float = 0.2,
                   synchronous: str = "NORMAL") -> SqliteStore:
        """Open (creating if needed) the store in ``path``.

        ``retention``: how many events are kept for resuming watches. ``synchronous=
        NORMAL`` in WAL mode never corrupts the file and loses no commit when the process
        dies; only an OS crash can lose the last commits. ``FULL`` fsyncs every commit.
        """
        if retention < 1:
            raise ValueError("event retention must be at least 1")
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"unknown synchronous mode {synchronous!r}")
        writer = await _connect(Path(path), synchronous)
        try:
            with _translate():
                await writer.execute_fetchall("PRAGMA journal_mode = WAL")
                await writer.executescript(SCHEMA)
                await writer.executescript(triggers(int(retention)))
            reader = await _connect(Path(path), synchronous)
        except BaseException:
            await writer.close()
            raise
        return cls(writer, reader, cross_process, poll_interval)

    async def get(self, kind: str, name: str, mesh: str = "") -> Resource:
        async with self._read() as db:
            rows = await db.execute_fetchall(
                f"SELECT {_COLUMNS} FROM resources WHERE {_KEY}", (kind, mesh, name))
        for row in rows:
            return self._resource(row)
        raise codec.not_found(kind, name, mesh)

    async def list(self, query: ListQuery) -> Page:
        size = query.page_size()
        after = query.after()
        where, params = _where(query)
        page_where, page_params = where, builtins.list(params)
        if after is not None:
            page_where += " AND (mesh, name) > (?, ?)"
            page_params += [after[0], after[1]]
        # One statement, so the count and the page come from one snapshot.
        async with self._read() as db:
            rows = builtins.list(await db.execute_fetchall(
                f"SELECT {_COLUMNS}, (SELECT count(*) FROM resources WHERE {where}) "
                f"FROM resources WHERE {page_where} ORDER BY mesh, name LIMIT ?",
                [*params, *page_params, size + 1]))
            if not rows:  # past the end: the count still wants an answer
                count = builtins.list(await db.execute_fetchall(
                    f"SELECT count(*) FROM resources WHERE {where}", params))
                return Page(items=[], total=int(count[0][0]))
        total = int(rows[0][-1])
        items = [self._resource(row[:-1]) for row in rows[:size]]
        token = page_token(items[-1]) if len(rows) > size else None
        return Page(items=items, total=total, next_token=token)

    async def create(self, res: Resource) -> Resource:
        async with self._writing():
            return await self._create(res)

    async def update(self, res: Resource, expected_version: int) -> Resource:
        async with self._writing():
            return await self._update(res, expected_version)

    async def delete(self, kind: str, name: str, mesh: str = "",
                     expected_version: int | None = None) -> None:
        async with self._writing():
            await self._delete(Delete(kind, name, mesh, expected_version))

    async def write(self, ops: Sequence[WriteOp]) -> builtins.list[Resource | None]:
        if not ops:
            return []
        async with self._writing():
            await self._statement("BEGIN IMMEDIATE")
            try:
                results = [await self._op(op) for op in ops]
                await self._statement("COMMIT")
            except BaseException:
                # Shielded: a cancelled batch must still end its transaction before the
                # next writer's statements reach this connection.
                await asyncio.shield(self._rollback())
                raise
        return results

    async def revision(self) -> int:
        async with self._read() as db:
            rows = await db.execute_fetchall(
                "SELECT value FROM counters WHERE name = 'revision'")
        return int(next(iter(rows))[0])

    async def watch(self, since: int) -> AsyncIterator[Event]:
        cursor = since
        while True:
            seen = self._writes  # before the read: a write after it is never missed
            events = await self._events_after(cursor)
            for event in events:
                cursor = event.revision
                yield event
            if not events:
                await self._wait_for_write(seen)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        async with self._changed:
            self._changed.notify_all()
        await self._writer.close()
        async with self._read_lock:
            await self._reader.close()

    # -- internals --------------------------------------------------------------------

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[None]:
        """Hold the writer connection; wake this store's watchers after the write (a
        refused one too: they re-read, find nothing new and sleep again)."""
        self._check_open()
        async with self._write_lock:
            try:
                yield
            finally:
                async with self._changed:
                    self._writes += 1
                    self._changed.notify_all()

    async def _statement(self, sql: str, params: Sequence[Any] = ()) -> builtins.list[Any]:
        self._check_open()
        with _translate():
            return builtins.list(await self._writer.execute_fetchall(sql, params))

    async def _rollback(self) -> None:
        with suppress(sqlite3.Error, ValueError):  # no transaction left, or closed
            await self._writer.execute_fetchall("ROLLBACK")

    async def _op(self, op: WriteOp) -> Resource | None:
        if isinstance(op, Create):
            return await self._create(op.resource)
        if isinstance(op, Update):
            return await self._update(op.resource, op.expected_version)
        if isinstance(op, Put):
            return await self._put(op.resource)
        return await self._delete(op)

    async def _create(self, res: Resource) -> Resource:
        now = datetime.now(UTC)
        stored = res.with_meta(Meta(version=1, creation_time=now, modification_time=now))
        rows = await self._statement(
            f"INSERT INTO resources ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, {_NEXT}) "
            "ON CONFLICT (kind, mesh, name) DO NOTHING RETURNING revision",
            _row_values(stored))
        if not rows:
            raise codec.already_exists(res.type, res.name, res.mesh)
        return stored.with_meta(Meta(version=1, creation_time=now, modification_time=now,
                                     revision=int(rows[0][0])))

    async def _update(self, res: Resource, expected_version: int) -> Resource:
        now = datetime.now(UTC)
        rows = await self._statement(
            f"UPDATE resources SET labels = ?, spec = ?, version = version + 1, "
            f"modification_time = ?, revision = {_NEXT} WHERE {_KEY} AND version = ? "
            "RETURNING creation_time, revision",
            (codec.labels_json(res), codec.spec_json(res), codec.format_time(now),
             res.type, res.mesh, res.name, expected_version))
        if not rows:
            raise await self._refusal(res.type, res.name, res.mesh, expected_version)
        created, revision = rows[0]
        return res.with_meta(Meta(version=expected_version + 1,
                                  creation_time=codec.parse_time(created),
                                  modification_time=now, revision=int(revision)))

    async def _put(self, res: Resource) -> Resource:
        # The upsert's WHERE leaves equal content alone: no row changes, no trigger fires.
        now = datetime.now(UTC)
        stored = res.with_meta(Meta(version=1, creation_time=now, modification_time=now))
        rows = await self._statement(
            f"INSERT INTO resources ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, {_NEXT}) "
            "ON CONFLICT (kind, mesh, name) DO UPDATE SET labels = excluded.labels, "
            "spec = excluded.spec, version = resources.version + 1, "
            "modification_time = excluded.modification_time, revision = excluded.revision "
            "WHERE resources.labels IS NOT excluded.labels "
            "OR resources.spec IS NOT excluded.spec "
            f"RETURNING {_COLUMNS}", _row_values(stored))
        if not rows:  # unchanged
            rows = await self._statement(f"SELECT {_COLUMNS} FROM resources WHERE {_KEY}",
                                         (res.type, res.mesh, res.name))
        return self._resource(rows[0])

    async def _delete(self, op: Delete) -> Resource | None:
        rows = await self._statement(
            "DELETE FROM resources WHERE kind = ?1 AND mesh = ?2 AND name = ?3 "
            f"AND (?4 IS NULL OR version = ?4) RETURNING {_COLUMNS}",
            (op.kind, op.mesh, op.name, op.expected_version))
        if rows:
            return self._resource(rows[0])
        refusal = await self._refusal(op.kind, op.name, op.mesh, op.expected_version)
        if op.missing_ok and isinstance(refusal, NotFound):
            return None
        raise refusal

    async def _refusal(self, kind: str, name: str, mesh: str,
                       expected: int | None) -> Exception:
        """Why a checked write matched no row: the resource is gone, or it moved on."""
        # Through the writer, which holds the lock: inside a batch only it sees the
        # batch's earlier writes.
        rows = await self._statement(f"SELECT version FROM resources WHERE {_KEY}",
                                     (kind, mesh, name))
        if not rows:
            return codec.not_found(kind, name, mesh)
        if expected is None:  # deleted and made again between the two statements
            return Conflict(f"{codec.describe(kind, name, mesh)} changed while it was being "
                            "deleted; retry")
        return codec.stale(kind, name, mesh, expected, int(rows[0][0]))

    async def _events_after(self, cursor: int) -> builtins.list[Event]:
        async with self._read() as db:
            rows = builtins.list(await db.execute_fetchall(
                "SELECT revision, type, kind, mesh, name, document FROM events "
                "WHERE revision > ? ORDER BY revision LIMIT ?", (cursor, WATCH_BATCH)))
        if rows and rows[0][0] != cursor + 1:
            raise RevisionCompacted(f"events before revision {rows[0][0]} are compacted")
        return [Event(int(rev), EventType(kind), codec.load_event_resource(k, m, n, doc))
                for rev, kind, k, m, n, doc in rows]

    async def _wait_for_write(self, seen: int) -> None:
        """Until a write after ``seen`` (or, cross-process, at most one poll interval)."""
        async with self._changed:
            with suppress(TimeoutError):
                async with asyncio.timeout(self._poll_interval):
                    await self._changed.wait_for(lambda: self._closed or self._writes != seen)
        self._check_open()

    def _resource(self, row: Sequence[Any]) -> Resource:
        kind, mesh, name, _, _, version, _, mtime, rev = row
        return self._decoded.get((kind, mesh, name, rev, version, mtime),
                                 lambda: _row_resource(row))

    def _check_open(self) -> None:
        if self._closed:
            raise StoreUnavailable("the store is closed")

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[aiosqlite.Connection]:
        # The lock keeps one task's statements from running inside another's snapshot.
        self._check_open()
        async with self._read_lock:
            self._check_open()
            with _translate():
                yield self._reader


async def _connect(path: Path, synchronous: str) -> aiosqlite.Connection:
    pending = aiosqlite.connect(path, isolation_level=None)
    # aiosqlite's worker thread is not a daemon: a process that exits without closing
    # the store would hang at exit joining it. SQLite itself is safe to stop anywhere.
    thread = getattr(pending, "_thread", None)
    if isinstance(thread, threading.Thread):
        thread.daemon = True
    with _translate():
        db = await pending
    try:
        with _translate():
            await db.execute_fetchall(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            await db.execute_fetchall(f"PRAGMA synchronous = {synchronous.upper()}")
    except BaseException:
        await db.close()
        raise
    return db


@contextmanager
def _translate() -> Iterator[None]:
    """sqlite3's exceptions as Gossamer's, at the boundary."""
    try:
        yield
    except sqlite3.IntegrityError as exc:
        raise Conflict(f"the store refused the write: {exc}") from exc
    except (sqlite3.OperationalError, sqlite3.DatabaseError) as exc:
        raise StoreUnavailable(f"sqlite: {exc}") from exc
    except ValueError as exc:
        if "no active connection" not in str(exc):
            raise
        raise StoreUnavailable("the store is closed") from exc


def _where(query: ListQuery) -> tuple[str, builtins.list[Any]]:
    clauses = ["kind = ?"]
    params: builtins.list[Any] = [query.kind]
    if query.mesh is not None:
        clauses.append("mesh = ?")
        params.append(query.mesh)
    for key, value in sorted((query.labels or {}).items()):
        # json_each instead of json_extract: label keys hold '.' and '/', which a JSON
        # path would need quoted; here they stay bound parameters.
        clauses.append("EXISTS (SELECT 1 FROM json_each(resources.labels) AS l "
                       "WHERE l.key = ? AND l.value = ?)")
        params += [key, value]
    return " AND ".join(clauses), params


def _row_values(res: Resource) -> tuple[Any, ...]:
    meta = res.meta
    if meta.creation_time is None or meta.modification_time is None:
        raise ValueError("a stored resource always has its times")
    return (res.type, res.mesh, res.name, codec.labels_json(res), codec.spec_json(res),
            meta.version, codec.format_time(meta.creation_time),
            codec.format_time(meta.modification_time))


def _row_resource(row: Sequence[Any]) -> Resource:
    kind, mesh, name, labels, spec, version, ctime, mtime, rev = row
    return codec.load_resource(kind, mesh, name, labels, spec,
                               Meta(version=int(version), creation_time=codec.parse_time(ctime),
                                    modification_time=codec.parse_time(mtime),
                                    revision=int(rev)))
