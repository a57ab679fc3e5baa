"""The SQLite store: the embedded default, one file and no server (DESIGN §7).

Theory of operation. Three tables: ``resources`` (one row per resource, primary key
``(kind, mesh, name)``), ``events`` (one row per write, keyed by revision) and
``counters`` (the store-wide revision). Every write is one ``BEGIN IMMEDIATE``
transaction that bumps the revision, checks the version and writes the resource,
appends the event and compacts events that fell out of the retention window. The write
lock SQLite takes at ``BEGIN IMMEDIATE`` serializes writers across connections and
processes and a failed write rolls its revision back, so revisions are contiguous and
commit in order: a watcher that sees revision ``n + 2`` right after ``n`` knows that
``n + 1`` was compacted.

Each store holds two connections: a writer (shared by every task, so its transactions
are serialized by an asyncio lock) and a reader, which in WAL mode sees only committed
data and never waits for the writer.

``watch`` replays events from the table, then sleeps on an ``asyncio.Condition`` that
every commit through *this* store notifies: no polling tick. Writes made through
another ``SqliteStore`` on the same file (another process) notify nobody here, so by
default such a watcher sees them only when a local write wakes it. With
``cross_process=True`` watchers also re-read the events table every ``poll_interval``
seconds: a short bounded poll, off by default, for deployments that share the file.
"""

from __future__ import annotations

import asyncio
import builtins
import sqlite3
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from gossamer.errors import Conflict, RevisionCompacted, StoreUnavailable
from gossamer.model.base import Meta, Resource
from gossamer.store import codec
from gossamer.store.base import EVENT_RETENTION, Event, EventType, ListQuery, Page, page_token

BUSY_TIMEOUT_MS = 10_000
WATCH_BATCH = 1000

_SCHEMA = """
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS resources (
    kind TEXT NOT NULL,
    mesh TEXT NOT NULL,
    name TEXT NOT NULL,
    labels TEXT NOT NULL CHECK (json_valid(labels)),
    spec TEXT NOT NULL CHECK (json_valid(spec)),
    version INTEGER NOT NULL,
    creation_time TEXT NOT NULL,
    modification_time TEXT NOT NULL,
    revision INTEGER NOT NULL,
    PRIMARY KEY (kind, mesh, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    revision INTEGER PRIMARY KEY,
    type TEXT NOT NULL,
    kind TEXT NOT NULL,
    mesh TEXT NOT NULL,
    name TEXT NOT NULL,
    document TEXT NOT NULL CHECK (json_valid(document))
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO counters (name, value) VALUES ('revision', 0);
PRAGMA user_version = 1;
COMMIT;
"""

_COLUMNS = ("kind, mesh, name, labels, spec, version, creation_time, modification_time, "
            "revision")


class SqliteStore:
    """A ``Store`` in one SQLite file; open it with ``await SqliteStore.open(path)``."""

    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection,
                 revision: int, retention: int, cross_process: bool,
                 poll_interval: float) -> None:
        if retention < 1:
            raise ValueError("event retention must be at least 1")
        self._writer = writer
        self._reader = reader
        self._retention = retention
        self._poll_interval = poll_interval if cross_process else None
        self._write_lock = asyncio.Lock()
        self._read_lock = asyncio.Lock()
        self._changed = asyncio.Condition()
        self._committed = revision  # the newest revision this store knows is committed
        self._closed = False

    @classmethod
    async def open(cls, path: Path | str, *, retention: int = EVENT_RETENTION,
                   cross_process: bool = False, poll_interval: float = 0.2,
                   synchronous: str = "NORMAL") -> SqliteStore:
        """Open (creating if needed) the store in ``path``.

        ``synchronous=NORMAL`` in WAL mode never corrupts the file and loses no commit
        when the process dies; only an OS crash can lose the last commits. Pass ``FULL``
        to fsync every commit.
        """
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"unknown synchronous mode {synchronous!r}")
        writer = await _connect(Path(path), synchronous)
        try:
            with _translate():
                await writer.execute_fetchall("PRAGMA journal_mode = WAL")
                await writer.executescript(_SCHEMA)
            reader = await _connect(Path(path), synchronous)
        except BaseException:
            await writer.close()
            raise
        store = cls(writer, reader, 0, retention, cross_process, poll_interval)
        store._committed = await store.revision()
        return store

    async def get(self, kind: str, name: str, mesh: str = "") -> Resource:
        async with self._read(snapshot=False) as db:
            rows = await db.execute_fetchall(
                f"SELECT {_COLUMNS} FROM resources WHERE kind = ? AND mesh = ? AND name = ?",
                (kind, mesh, name))
        for row in rows:
            return _row_resource(row)
        raise codec.not_found(kind, name, mesh)

    async def list(self, query: ListQuery) -> Page:
        size = query.page_size()
        after = query.after()
        where, params = _where(query)
        page_where, page_params = where, builtins.list(params)
        if after is not None:
            page_where += " AND (mesh, name) > (?, ?)"
            page_params += [after[0], after[1]]
        async with self._read(snapshot=True) as db:
            count = await db.execute_fetchall(
                f"SELECT count(*) FROM resources WHERE {where}", params)
            rows = builtins.list(await db.execute_fetchall(
                f"SELECT {_COLUMNS} FROM resources WHERE {page_where} "
                "ORDER BY mesh, name LIMIT ?", [*page_params, size + 1]))
        items = [_row_resource(row) for row in rows[:size]]
        token = page_token(items[-1]) if len(rows) > size else None
        total = next(iter(count))[0]
        return Page(items=items, total=int(total), next_token=token)

    async def create(self, res: Resource) -> Resource:
        async with self._write() as db:
            rev = await _bump(db)
            now = datetime.now(UTC)
            stored = res.with_meta(Meta(version=1, creation_time=now, modification_time=now,
                                        revision=rev))
            cursor = await db.execute(
                f"INSERT INTO resources ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (kind, mesh, name) DO NOTHING", _row_values(stored))
            if cursor.rowcount == 0:
                raise codec.already_exists(res.type, res.name, res.mesh)
            await self._append(db, rev, EventType.CREATED, stored)
        await self._notify(rev)
        return stored

    async def update(self, res: Resource, expected_version: int) -> Resource:
        async with self._write() as db:
            current = await _select_version(db, res.type, res.name, res.mesh)
            if current[0] != expected_version:
                raise codec.stale(res.type, res.name, res.mesh, expected_version, current[0])
            rev = await _bump(db)
            stored = res.with_meta(Meta(version=expected_version + 1,
                                        creation_time=codec.parse_time(current[1]),
                                        modification_time=datetime.now(UTC), revision=rev))
            await db.execute(
                "UPDATE resources SET labels = ?, spec = ?, version = ?, "
                "modification_time = ?, revision = ? WHERE kind = ? AND mesh = ? AND name = ?",
                (codec.labels_json(stored), codec.spec_json(stored), stored.meta.version,
                 _time(stored.meta.modification_time), rev, res.type, res.mesh, res.name))
            await self._append(db, rev, EventType.UPDATED, stored)
        await self._notify(rev)
        return stored

    async def delete(self, kind: str, name: str, mesh: str = "",
                     expected_version: int | None = None) -> None:
        async with self._write() as db:
            rows = await db.execute_fetchall(
                f"SELECT {_COLUMNS} FROM resources WHERE kind = ? AND mesh = ? AND name = ?",
                (kind, mesh, name))
            if not rows:
                raise codec.not_found(kind, name, mesh)
            current = _row_resource(next(iter(rows)))
            if expected_version is not None and current.meta.version != expected_version:
                raise codec.stale(kind, name, mesh, expected_version, current.meta.version)
            rev = await _bump(db)
            await db.execute("DELETE FROM resources WHERE kind = ? AND mesh = ? AND name = ?",
                             (kind, mesh, name))
            await self._append(db, rev, EventType.DELETED, current)
        await self._notify(rev)

    async def revision(self) -> int:
        async with self._read(snapshot=False) as db:
            rows = await db.execute_fetchall(
                "SELECT value FROM counters WHERE name = 'revision'")
        return int(next(iter(rows))[0])

    async def watch(self, since: int) -> AsyncIterator[Event]:
        cursor = since
        while True:
            events = await self._events_after(cursor)
            for event in events:
                cursor = event.revision
                yield event
            if not events:
                await self._wait_beyond(cursor)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        async with self._changed:
            self._changed.notify_all()
        async with self._write_lock:
            await self._writer.close()
        async with self._read_lock:
            await self._reader.close()

    # -- internals --------------------------------------------------------------------

    async def _events_after(self, cursor: int) -> builtins.list[Event]:
        async with self._read(snapshot=False) as db:
            rows = builtins.list(await db.execute_fetchall(
                "SELECT revision, type, kind, mesh, name, document FROM events "
                "WHERE revision > ? ORDER BY revision LIMIT ?", (cursor, WATCH_BATCH)))
        if rows and rows[0][0] != cursor + 1:
            raise RevisionCompacted(f"events before revision {rows[0][0]} are compacted")
        return [Event(int(rev), EventType(kind), codec.load_event_resource(k, m, n, doc))
                for rev, kind, k, m, n, doc in rows]

    async def _wait_beyond(self, cursor: int) -> None:
        """Until a commit past ``cursor`` (or, cross-process, at most one poll interval)."""
        async with self._changed:
            try:
                async with asyncio.timeout(self._poll_interval):
                    await self._changed.wait_for(
                        lambda: self._closed or self._committed > cursor)
            except TimeoutError:
                pass
        self._check_open()

    async def _notify(self, rev: int) -> None:
        async with self._changed:
            self._committed = max(self._committed, rev)
            self._changed.notify_all()

    async def _append(self, db: aiosqlite.Connection, rev: int, kind: EventType,
                      res: Resource) -> None:
        await db.execute(
            "INSERT INTO events (revision, type, kind, mesh, name, document) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (rev, kind.value, res.type, res.mesh, res.name, codec.event_document(res)))
        if rev > self._retention:
            await db.execute("DELETE FROM events WHERE revision <= ?", (rev - self._retention,))

    def _check_open(self) -> None:
        if self._closed:
            raise StoreUnavailable("the store is closed")

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction; the lock keeps other tasks' statements out of it."""
        self._check_open()
        async with self._write_lock:
            self._check_open()
            with _translate():
                await self._writer.execute("BEGIN IMMEDIATE")
                try:
                    yield self._writer
                    await self._writer.execute("COMMIT")
                except BaseException:
                    with suppress(sqlite3.Error):
                        await self._writer.execute("ROLLBACK")
                    raise

    @asynccontextmanager
    async def _read(self, snapshot: bool) -> AsyncIterator[aiosqlite.Connection]:
        """The reader; with ``snapshot`` its statements share one read transaction."""
        self._check_open()
        async with self._read_lock:
            self._check_open()
            with _translate():
                if not snapshot:
                    yield self._reader
                    return
                await self._reader.execute("BEGIN")
                try:
                    yield self._reader
                finally:
                    with suppress(sqlite3.Error):
                        await self._reader.execute("COMMIT")


async def _connect(path: Path, synchronous: str) -> aiosqlite.Connection:
    with _translate():
        db = await aiosqlite.connect(path, isolation_level=None)
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


async def _bump(db: aiosqlite.Connection) -> int:
    rows = await db.execute_fetchall(
        "UPDATE counters SET value = value + 1 WHERE name = 'revision' RETURNING value")
    return int(next(iter(rows))[0])


async def _select_version(db: aiosqlite.Connection, kind: str, name: str,
                          mesh: str) -> tuple[int, str]:
    rows = await db.execute_fetchall(
        "SELECT version, creation_time FROM resources WHERE kind = ? AND mesh = ? AND name = ?",
        (kind, mesh, name))
    for version, creation_time in rows:
        return int(version), str(creation_time)
    raise codec.not_found(kind, name, mesh)


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


def _time(value: datetime | None) -> str:
    if value is None:
        raise ValueError("a stored resource always has its times")
    return codec.format_time(value)


def _row_values(res: Resource) -> tuple[Any, ...]:
    return (res.type, res.mesh, res.name, codec.labels_json(res), codec.spec_json(res),
            res.meta.version, _time(res.meta.creation_time),
            _time(res.meta.modification_time), res.meta.revision)


def _row_resource(row: Sequence[Any]) -> Resource:
    kind, mesh, name, labels, spec, version, ctime, mtime, rev = row
    return codec.load_resource(kind, mesh, name, labels, spec,
                               Meta(version=int(version), creation_time=codec.parse_time(ctime),
                                    modification_time=codec.parse_time(mtime),
                                    revision=int(rev)))
