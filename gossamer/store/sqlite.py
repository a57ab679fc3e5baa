"""The SQLite store: the embedded default, one file and no server (DESIGN §7).

Theory of operation. Three tables (``sqlite_schema``): ``resources`` (one row per
resource, primary key ``(kind, mesh, name)``), ``events`` (one row per write, keyed by
revision) and ``counters`` (the store-wide revision). Each op of a write is a single SQL
statement: the ``INSERT``/``UPDATE``/``DELETE`` of the resource carries its own
version check (``WHERE version = ?``) and takes the next revision, and triggers in the
same statement bump the counter, append the event and compact events that fell out of
the retention window. The triggers are TEMP triggers, created by each store's writer
connection with its own retention, so the file holds data only. SQLite's write lock
serializes writers across connections and processes and a refused write changes
nothing, so revisions are contiguous and commit in order: a watcher that sees revision
``n + 2`` right after ``n`` knows that ``n + 1`` was compacted.

Writes go through ``sqlite_writer``: its own connection and thread, where a whole
batch (``write``; a single write is a batch of one) runs as one call between
``BEGIN IMMEDIATE`` and ``COMMIT``, and a refused op rolls all of it back.

Each store holds three connections: the writer and two readers, one for watches and
one for everything else, which in WAL mode see only committed data and never wait for
the writer.

``watch`` replays events from the table, then sleeps on an ``asyncio.Condition`` that
every write through *this* store notifies: no polling tick. Writes made through
another ``SqliteStore`` on the same file (another process) notify nobody here, so by
default such a watcher sees them only when a local write wakes it. With
``cross_process=True`` watchers also re-read the events table every ``poll_interval``
seconds: a short bounded poll, off by default, for deployments that share the file.
Without it the store is the file's only writer, so it knows its revision (the writer
reads the counter after each batch, in the same call) and ``revision()`` reads nothing.
"""

from __future__ import annotations

import asyncio
import builtins
import os
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import aiosqlite

from gossamer.errors import Conflict, RevisionCompacted, StoreUnavailable
from gossamer.model.base import Meta, Resource
from gossamer.store import codec
from gossamer.store.base import (
    EVENT_RETENTION,
    Delete,
    Event,
    EventType,
    ListQuery,
    Page,
    SingleWrites,
    WriteOp,
    page_token,
)
from gossamer.store.sqlite_schema import SCHEMA, triggers
from gossamer.store.sqlite_writer import COLUMNS, KEY, Outcome, Writer, written
from gossamer.store.turns import Turns

BUSY_TIMEOUT_MS = 10_000
# Events read per step of a watch (one statement; decoding them gives the loop turns).
WATCH_BATCH = 200

_COLUMNS, _KEY = COLUMNS, KEY


class SqliteStore(SingleWrites):
    """A ``Store`` in one SQLite file; open it with ``await SqliteStore.open(path)``."""

    def __init__(self, writer: Writer, reader: aiosqlite.Connection,
                 watch_reader: aiosqlite.Connection, cross_process: bool,
                 poll_interval: float) -> None:
        self._writer = writer
        self._readers = {False: reader, True: watch_reader}
        self._poll_interval = poll_interval if cross_process else None
        self._read_locks = {False: asyncio.Lock(), True: asyncio.Lock()}
        self._changed = asyncio.Condition()
        self._writes = 0  # writes committed through this store, for waking watchers
        self._closed = False
        self._decoded = codec.DecodeCache()
        self._decoded_events = codec.DecodeCache()  # every watcher reads the same events
        self._fresh = codec.Written()  # what this store wrote, for its watchers
        # The revision after this store's last write: alone on its file (no
        # ``cross_process``), nobody else writes, so ``revision()`` needs no read.
        self._revision: int | None = None

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
        def setup(conn: sqlite3.Connection) -> None:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.executescript(SCHEMA)
            conn.executescript(triggers(int(retention)))

        _keep_private(Path(path))
        with _translate():
            writer = await Writer.open(Path(path), setup)
        readers: builtins.list[aiosqlite.Connection] = []
        try:
            for _ in range(2):
                readers.append(await _connect(Path(path), synchronous))
        except BaseException:
            for reader in readers:
                await reader.close()
            await writer.close()
            raise
        store = cls(writer, readers[0], readers[1], cross_process, poll_interval)
        if not cross_process:
            try:
                with _translate():
                    store._revision = await writer.revision()
            except BaseException:
                await store.close()
                raise
        return store

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

    async def write(self, ops: Sequence[WriteOp]) -> builtins.list[Resource | None]:
        if not ops:
            return []
        self._check_open()
        now = datetime.now(UTC)
        revision: int | None = None
        try:
            with _translate():
                outcomes, revision = await self._writer.write(ops, now)
            # Committed. The results, a few microseconds each, are built in slices
            # (thousands in a batch), and each written resource is kept for the watch
            # by its revision before watchers are woken, so they need not decode it.
            results: builtins.list[Resource | None] = []
            turns = Turns()
            for op, outcome in zip(ops, outcomes, strict=True):
                res = self._result(op, outcome, now)
                results.append(res)
                if res is not None and outcome.meta is not None:
                    self._fresh.put(res)
                await turns.tick()
        finally:  # a refused batch too: woken watchers re-read, find nothing, sleep again
            async with self._changed:
                if revision is not None and self._revision is not None:
                    self._revision = revision  # known as its watchers are woken
                self._writes += 1
                self._changed.notify_all()
        return results

    async def revision(self) -> int:
        if self._revision is not None:
            self._check_open()
            return self._revision
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
        for watch in (False, True):
            async with self._read_locks[watch]:
                await self._readers[watch].close()

    # -- internals --------------------------------------------------------------------

    def _result(self, op: WriteOp, outcome: Outcome, now: datetime) -> Resource | None:
        if outcome.row is not None:
            return self._resource(outcome.row)
        if outcome.meta is None or isinstance(op, Delete):
            return None
        return written(op.resource, outcome, now)

    async def _events_after(self, cursor: int) -> builtins.list[Event]:
        async with self._read(watch=True) as db:
            rows = builtins.list(await db.execute_fetchall(
                "SELECT revision, type, kind, mesh, name, document FROM events "
                "WHERE revision > ? ORDER BY revision LIMIT ?", (cursor, WATCH_BATCH)))
        if rows and rows[0][0] != cursor + 1:
            raise RevisionCompacted(f"events before revision {rows[0][0]} are compacted")
        events = []
        turns = Turns()
        for rev, kind, k, m, n, doc in rows:
            res = self._fresh.find(int(rev), (k, m, n)) if kind != "deleted" else None
            if res is None:
                res = self._decoded_events.get(
                    (rev, k, m, n, doc), partial(codec.load_event_resource, k, m, n, doc))
            events.append(Event(int(rev), EventType(kind), res))
            await turns.tick()
        return events

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
    async def _read(self, watch: bool = False) -> AsyncIterator[aiosqlite.Connection]:
        # The lock keeps one task's statements from running inside another's snapshot.
        # Watches read on a connection (and thread) of their own, so that the API's
        # reads never queue behind a watch's, nor the watch behind a batch's gets.
        self._check_open()
        async with self._read_locks[watch]:
            self._check_open()
            with _translate():
                yield self._readers[watch]


def _keep_private(path: Path) -> None:
    """Make the store file 0600 before SQLite opens it (its -wal and -shm files take the
    same mode): it holds GlobalSecrets, root CA and token signing keys among them."""
    if str(path) == ":memory:" or str(path).startswith("file:"):
        return
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
    except OSError:
        return  # SQLite's own open reports a path it cannot use, with its reason


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


def _row_resource(row: Sequence[Any]) -> Resource:
    kind, mesh, name, labels, spec, version, ctime, mtime, rev = row
    return codec.load_resource(kind, mesh, name, labels, spec,
                               Meta(version=int(version), creation_time=codec.parse_time(ctime),
                                    modification_time=codec.parse_time(mtime),
                                    revision=int(rev)))
