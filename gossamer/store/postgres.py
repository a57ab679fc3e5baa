"""The PostgreSQL store: production, several control-plane replicas over one database.

Theory of operation. The schema is ``gossamer/store/migrations/*.sql``, applied at
open inside one transaction that holds an advisory lock, so replicas starting together
migrate once. Every write is one transaction (a single write is a batch of one) that
first takes the row lock of ``store_revision``, then writes each resource with its check
(``UPDATE … WHERE version = $n``; a refused op raises, which rolls the transaction back),
then appends the events of the ops that changed something and moves the revision past
them. Holding that one lock until commit serializes writers, so revisions commit in
order and a failed write leaves no gap (a sequence would let revision n+1 commit before
n and a watcher skip n); taking it first gives every writer the same lock order, so
writers never deadlock.

``watch`` reads events from the ``events`` table — the source of truth — and sleeps
until woken. A trigger on ``events`` sends ``NOTIFY gossamer_events`` at each commit; one
dedicated LISTEN connection per store (``pg_connection.Listener``) wakes every local watcher on each
notification, and again after it reconnects, since notifications sent while it was
away are lost: a woken watcher simply re-reads from its last revision. During an outage
watchers retry their reads with a backoff instead of failing. Bounded waits use
``asyncio.timeout``, not ``asyncio.wait_for``: before Python 3.12 the latter can swallow
a cancellation that arrives as the awaited thing completes, and a cancelled watcher or
listener would keep running.

asyncpg's exceptions are translated at this boundary (``pg_connection.translate``).
"""

from __future__ import annotations

import asyncio
import builtins
import json
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

import asyncpg

from gossamer.election.core import Fence
from gossamer.errors import (
    RevisionCompacted,
    StoreConfigError,
    StoreUnavailable,
)
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
    SingleWrites,
    Update,
    WriteOp,
    page_token,
)
from gossamer.store.migrations import steps
from gossamer.store.pg_connection import (
    CLOSE_TIMEOUT,
    PROBE_TIMEOUT,
    RETRY_MAX,
    RETRY_MIN,
    UNAVAILABLE,
    Listener,
    translate,
)
from gossamer.store.pg_leases import PostgresLeases, check_fence

log = logging.getLogger(__name__)

MIGRATION_LOCK = 0x676F_7373_0000_0001  # "goss" + 1: the schema migration advisory lock
# A client cut off mid-transaction (a pulled cable: no FIN, no RST) would hold the
# revision lock, and a fenced write its lease row, until the server noticed the dead
# peer: every writer and a new leader would wait on it. The server ends a transaction
# left idle this long instead; ours never pause between statements for anywhere near it.
SERVER_SETTINGS = {"idle_in_transaction_session_timeout": "8000"}  # milliseconds
# Events read (and decoded) per step of a watch: each step holds the event loop while it
# decodes, so a batch of thousands of writes reaches a watcher in steps of tens of ms.
WATCH_BATCH = 200

if TYPE_CHECKING:  # generic only in asyncpg-stubs
    from asyncpg.pool import PoolConnectionProxy

    Conn = PoolConnectionProxy[asyncpg.Record]

_COLUMNS = ("kind, mesh, name, labels, spec, version, creation_time, modification_time, "
            "revision")


async def migrate(conn: asyncpg.Connection[Any] | Conn) -> builtins.list[int]:
    """Apply the steps this database lacks; returns their versions. Idempotent."""
    known = steps()
    async with conn.transaction():
        # Held until commit: a replica starting at the same time waits here, then finds
        # everything applied.
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations ("
                           "version integer PRIMARY KEY, name text NOT NULL, "
                           "applied_at timestamptz NOT NULL DEFAULT now())")
        applied = {int(r["version"]) for r in await conn.fetch(
            "SELECT version FROM schema_migrations")}
        if applied and max(applied) > known[-1].version:
            raise StoreConfigError(f"the database schema is at version {max(applied)}, newer "
                                   f"than this Gossamer knows ({known[-1].version})")
        done = []
        for step in known:
            if step.version in applied:
                continue
            await conn.execute(step.sql)
            await conn.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                               step.version, step.name)
            done.append(step.version)
    return done


class PostgresStore(SingleWrites):
    """A ``Store`` in a PostgreSQL database; open it with ``await PostgresStore.open(dsn)``."""

    def __init__(self, pool: asyncpg.Pool[asyncpg.Record], dsn: str, retention: int,
                 connect_timeout: float) -> None:
        if retention < 1:
            raise ValueError("event retention must be at least 1")
        self._pool = pool
        self._retention = retention
        self._watchers: set[asyncio.Event] = set()
        self._listener = Listener(dsn, self._wake_watchers, connect_timeout)
        self._dsn, self._connect_timeout = dsn, connect_timeout
        self._liveness = self._listener.liveness
        self._liveness.on_down = self._expire_pool
        self._closed = False
        self._decoded = codec.DecodeCache()
        self._decoded_events = codec.DecodeCache()  # every watcher reads the same events

    @classmethod
    async def open(cls, dsn: str, *, retention: int = EVENT_RETENTION, min_size: int = 1,
                   max_size: int = 10, connect_timeout: float = 10.0,
                   command_timeout: float = 60.0) -> PostgresStore:
        with translate():
            # A pool connection that takes longer than a probe to connect is to a database
            # that does not answer: the operation waiting on it fails in time (a 503).
            pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size,
                                             timeout=min(connect_timeout, 1.5 * PROBE_TIMEOUT),
                                             command_timeout=command_timeout,
                                             server_settings=SERVER_SETTINGS)
        try:
            with translate():
                async with pool.acquire() as conn:
                    await migrate(conn)
        except BaseException:
            pool.terminate()
            raise
        return cls(pool, dsn, retention, connect_timeout)

    async def get(self, kind: str, name: str, mesh: str = "") -> Resource:
        async with self._connection() as conn:
            row = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM resources WHERE kind = $1 AND mesh = $2 AND name = $3",
                kind, mesh, name)
        if row is None:
            raise codec.not_found(kind, name, mesh)
        return self._resource(row)

    async def list(self, query: ListQuery) -> Page:
        size = query.page_size()
        after = query.after()
        where, params = _where(query)
        page_where, page_params = where, builtins.list(params)
        if after is not None:
            n = len(page_params)
            page_where += f" AND (mesh, name) > (${n + 1}, ${n + 2})"
            page_params += [after[0], after[1]]
        # One statement, so the count and the page come from one snapshot (the count's
        # parameters are a prefix of the page's, so they share the numbering).
        async with self._connection() as conn:
            rows = await conn.fetch(
                f"SELECT {_COLUMNS}, (SELECT count(*) FROM resources WHERE {where}) AS total "
                f"FROM resources WHERE {page_where} "
                f"ORDER BY mesh, name LIMIT ${len(page_params) + 1}", *page_params, size + 1)
            if not rows:  # past the end: the count still wants an answer
                total = await conn.fetchval(f"SELECT count(*) FROM resources WHERE {where}",
                                            *params)
                return Page(items=[], total=int(total))
        items = [self._resource(row) for row in rows[:size]]
        token = page_token(items[-1]) if len(rows) > size else None
        return Page(items=items, total=int(rows[0]["total"]), next_token=token)

    async def write(self, ops: Sequence[WriteOp], *,
                    fence: Fence | None = None) -> builtins.list[Resource | None]:
        """The batch; with a ``fence``, refused (``NotLeader``) unless its lease holds
        (``pg_leases.check_fence``, before the revision lock: every writer locks in the
        same order)."""
        if not ops:
            return []
        async with self._transaction() as conn:
            if fence is not None:
                await check_fence(conn, fence)
            base = int(await conn.fetchval("SELECT value FROM store_revision FOR UPDATE"))
            now = datetime.now(UTC)
            changes: builtins.list[tuple[EventType, Resource]] = []
            results: builtins.list[Resource | None] = []
            for op in ops:
                result, change = await _write_op(conn, op, base + len(changes) + 1, now)
                results.append(result)
                if change is not None and result is not None:
                    changes.append((change, result))
            if changes:
                await self._append(conn, base, changes)
        return results

    def leases(self) -> PostgresLeases:
        """Leader-election leases in this database, on a connection of their own."""
        return PostgresLeases(self._dsn, self._connect_timeout)

    async def revision(self) -> int:
        async with self._connection() as conn:
            return int(await conn.fetchval("SELECT value FROM store_revision"))

    async def watch(self, since: int) -> AsyncIterator[Event]:
        self._check_open()
        wake = asyncio.Event()
        self._watchers.add(wake)  # before the first read: no commit can slip between
        self._listener.start()
        try:
            cursor, backoff = since, RETRY_MIN
            while True:
                wake.clear()
                try:
                    events = await self._events_after(cursor)
                except StoreUnavailable as exc:
                    self._check_open()
                    log.warning("store watch: %s; retrying from revision %d", exc.detail,
                                cursor)
                    with suppress(TimeoutError):
                        async with asyncio.timeout(backoff):
                            await wake.wait()
                    backoff = min(backoff * 2, RETRY_MAX)
                    continue
                backoff = RETRY_MIN
                for event in events:
                    cursor = event.revision
                    yield event
                if not events:
                    await wake.wait()
                    self._check_open()
        finally:
            self._watchers.discard(wake)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._wake_watchers()
        # The pool first, while the listener still tells whether the database answers:
        # one that does not gets its connections terminated, not a goodbye it would
        # never answer (stopping a global while its database was down could hang).
        try:
            if self._liveness.down is not None:
                raise TimeoutError
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self._pool.close()
        except UNAVAILABLE:  # TimeoutError among them
            self._pool.terminate()
        await self._listener.close()

    # -- internals --------------------------------------------------------------------

    async def _events_after(self, cursor: int) -> builtins.list[Event]:
        async with self._connection() as conn:
            rows = await conn.fetch(
                "SELECT revision, type, kind, mesh, name, document FROM events "
                "WHERE revision > $1 ORDER BY revision LIMIT $2", cursor, WATCH_BATCH)
        if rows and rows[0]["revision"] != cursor + 1:
            raise RevisionCompacted(f"events before revision {rows[0]['revision']} "
                                    "are compacted")
        return [Event(int(r["revision"]), EventType(r["type"]), self._decoded_events.get(
                    (r["revision"], r["kind"], r["mesh"], r["name"], r["document"]),
                    partial(codec.load_event_resource, r["kind"], r["mesh"], r["name"],
                            r["document"])))
                for r in rows]

    async def _append(self, conn: Conn, base: int,
                      changes: builtins.list[tuple[EventType, Resource]]) -> None:
        """The events of one transaction, at revisions ``base + 1`` on."""
        last = base + len(changes)
        await conn.executemany(
            "INSERT INTO events (revision, type, kind, mesh, name, document) "
            "VALUES ($1, $2, $3, $4, $5, $6::jsonb)",
            [(base + i, kind.value, res.type, res.mesh, res.name, codec.event_document(res))
             for i, (kind, res) in enumerate(changes, start=1)])
        await conn.execute("UPDATE store_revision SET value = $1", last)
        if last > self._retention:
            await conn.execute("DELETE FROM events WHERE revision <= $1", last - self._retention)

    def _resource(self, row: asyncpg.Record) -> Resource:
        key = (row["kind"], row["mesh"], row["name"], row["revision"], row["version"],
               row["modification_time"])
        return self._decoded.get(key, lambda: _row_resource(row))

    async def _expire_pool(self) -> None:
        await self._pool.expire_connections()

    def _wake_watchers(self) -> None:
        for wake in self._watchers:
            wake.set()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreUnavailable("the store is closed")

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Conn]:
        """A pool connection, refused at once while the database does not answer and
        terminated if it stops answering meanwhile (``pg_connection.Liveness``)."""
        self._check_open()
        self._liveness.check()
        self._listener.start()  # the probes, even for a store nobody watches
        try:
            with translate():
                async with self._pool.acquire() as conn:
                    with self._liveness.holding(conn):
                        yield conn
        except StoreUnavailable as exc:
            if self._liveness.down is not None:  # say why it does not answer
                raise self._liveness.unavailable(exc.detail) from exc
            raise

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Conn]:
        async with self._connection() as conn, conn.transaction():
            yield conn


async def _write_op(conn: Conn, op: WriteOp, rev: int,
                    now: datetime) -> tuple[Resource | None, EventType | None]:
    """One op inside a batch's transaction, at revision ``rev`` if it changes anything:
    the op's result and its event type (None: nothing changed); raises its refusal."""
    if isinstance(op, Delete):
        row = await conn.fetchrow(
            f"DELETE FROM resources WHERE kind = $1 AND mesh = $2 AND name = $3 "
            f"RETURNING {_COLUMNS}", op.kind, op.mesh, op.name)
        if row is None:
            if op.missing_ok:
                return None, None
            raise codec.not_found(op.kind, op.name, op.mesh)
        current = _row_resource(row)
        if op.expected_version is not None and current.meta.version != op.expected_version:
            # Raising rolls the delete back, with the whole batch.
            raise codec.stale(op.kind, op.name, op.mesh, op.expected_version,
                              current.meta.version)
        return current, EventType.DELETED
    res = op.resource
    args = (res.type, res.mesh, res.name, codec.labels_json(res), codec.spec_json(res))
    if isinstance(op, Update):
        row = await conn.fetchrow(
            "UPDATE resources SET labels = $4::jsonb, spec = $5::jsonb, "
            "version = version + 1, modification_time = $6, revision = $7 "
            "WHERE kind = $1 AND mesh = $2 AND name = $3 AND version = $8 "
            "RETURNING version, creation_time", *args, now, rev, op.expected_version)
        if row is None:
            raise await _refusal(conn, res, op.expected_version)
        return _with_meta(res, row, now, rev), EventType.UPDATED
    conflict = ("DO NOTHING" if isinstance(op, Create) else
                "DO UPDATE SET labels = EXCLUDED.labels, spec = EXCLUDED.spec, "
                "version = resources.version + 1, modification_time = EXCLUDED.modification_time, "
                "revision = EXCLUDED.revision WHERE resources.labels IS DISTINCT FROM "
                "EXCLUDED.labels OR resources.spec IS DISTINCT FROM EXCLUDED.spec")
    row = await conn.fetchrow(
        f"INSERT INTO resources ({_COLUMNS}) "
        "VALUES ($1, $2, $3, $4::jsonb, $5::jsonb, 1, $6, $6, $7) "
        f"ON CONFLICT (kind, mesh, name) {conflict} RETURNING version, creation_time",
        *args, now, rev)
    if row is None and isinstance(op, Create):
        raise codec.already_exists(res.type, res.name, res.mesh)
    if row is None:  # a Put of what is stored already
        row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM resources WHERE kind = $1 "
                                  "AND mesh = $2 AND name = $3", res.type, res.mesh, res.name)
        assert row is not None  # it conflicted, and the revision lock keeps writers out
        return _row_resource(row), None
    kind = EventType.CREATED if row["version"] == 1 else EventType.UPDATED
    return _with_meta(res, row, now, rev), kind


async def _refusal(conn: Conn, res: Resource, expected: int) -> Exception:
    actual = await conn.fetchval(
        "SELECT version FROM resources WHERE kind = $1 AND mesh = $2 AND name = $3",
        res.type, res.mesh, res.name)
    if actual is None:
        return codec.not_found(res.type, res.name, res.mesh)
    return codec.stale(res.type, res.name, res.mesh, expected, int(actual))


def _with_meta(res: Resource, row: asyncpg.Record, now: datetime, rev: int) -> Resource:
    return res.with_meta(Meta(version=int(row["version"]), creation_time=row["creation_time"],
                              modification_time=now, revision=rev))


def _where(query: ListQuery) -> tuple[str, builtins.list[Any]]:
    clauses = ["kind = $1"]
    params: builtins.list[Any] = [query.kind]
    if query.mesh is not None:
        params.append(query.mesh)
        clauses.append(f"mesh = ${len(params)}")
    if query.labels:
        params.append(json.dumps(dict(query.labels)))
        clauses.append(f"labels @> ${len(params)}::jsonb")
    return " AND ".join(clauses), params


def _row_resource(row: asyncpg.Record) -> Resource:
    meta = Meta(version=int(row["version"]), creation_time=row["creation_time"],
                modification_time=row["modification_time"], revision=int(row["revision"]))
    return codec.load_resource(row["kind"], row["mesh"], row["name"], row["labels"],
                               row["spec"], meta)
