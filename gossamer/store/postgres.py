"""The PostgreSQL store: production, several control-plane replicas over one database.

Theory of operation. The schema is ``gossamer/store/migrations/*.sql``, applied at
open inside one transaction that holds an advisory lock, so replicas starting together
migrate once. Every write is one transaction that first takes the row lock of
``store_revision`` (bumping the revision), then writes the resource with a version check
(``UPDATE … WHERE version = $n``) and appends its event. Holding that one lock until
commit serializes writers, so revisions commit in order and a failed write leaves no
gap (a sequence would let revision n+1 commit before n and a watcher skip n); taking it
first gives every writer the same lock order, so writers never deadlock.

``watch`` reads events from the ``events`` table — the source of truth — and sleeps
until woken. A trigger on ``events`` sends ``NOTIFY gossamer_events`` at each commit; one
dedicated LISTEN connection per store (``_Listener``) wakes every local watcher on each
notification, and again after it reconnects, since notifications sent while it was
away are lost: a woken watcher simply re-reads from its last revision. During an outage
watchers retry their reads with a backoff instead of failing. Bounded waits use
``asyncio.timeout``, not ``asyncio.wait_for``: before Python 3.12 the latter can swallow
a cancellation that arrives as the awaited thing completes, and a cancelled watcher or
listener would keep running.

asyncpg's exceptions are translated at this boundary (``_translate``): connection
failures are ``StoreUnavailable``, unique violations and serialization failures
``Conflict``, a missing database or refused credentials ``StoreConfigError``.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import asyncpg

from gossamer.errors import (
    Conflict,
    RevisionCompacted,
    StoreConfigError,
    StoreUnavailable,
)
from gossamer.model.base import Meta, Resource
from gossamer.store import codec
from gossamer.store.base import EVENT_RETENTION, Event, EventType, ListQuery, Page, page_token
from gossamer.store.migrations import steps

log = logging.getLogger(__name__)

CHANNEL = "gossamer_events"
MIGRATION_LOCK = 0x676F_7373_0000_0001  # "goss" + 1: the schema migration advisory lock
WATCH_BATCH = 1000
RETRY_MIN, RETRY_MAX = 0.05, 2.0
KEEPALIVE = 30.0  # seconds of silence before the LISTEN connection is probed

if TYPE_CHECKING:  # generic only in asyncpg-stubs
    from asyncpg.pool import PoolConnectionProxy

    Conn = PoolConnectionProxy[asyncpg.Record]

_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable; ConnectionError is one
    TimeoutError,
    asyncpg.PostgresConnectionError,  # SQLSTATE 08: the connection failed or is gone
    asyncpg.exceptions.OperatorInterventionError,  # 57: shutdown, cannot connect now
    asyncpg.exceptions.InsufficientResourcesError,  # 53: too many connections, disk full
    asyncpg.exceptions.ReadOnlySQLTransactionError,  # a standby, or a failover in progress
)
_CONFIG: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.InvalidAuthorizationSpecificationError,  # 28: bad user/password
    asyncpg.exceptions.InvalidCatalogNameError,  # 3D000: no such database
    asyncpg.exceptions.ClientConfigurationError,  # a malformed DSN
)
_COLUMNS = ("kind, mesh, name, labels, spec, version, creation_time, modification_time, "
            "revision")


@contextmanager
def _translate() -> Iterator[None]:
    try:
        yield
    except asyncpg.UniqueViolationError as exc:
        raise Conflict(f"the store refused the write: {exc}") from exc
    except asyncpg.exceptions.TransactionRollbackError as exc:  # serialization, deadlock
        raise Conflict(f"the write collided with another one; retry it: {exc}") from exc
    except _CONFIG as exc:
        raise StoreConfigError(f"postgres: {exc}") from exc
    except _UNAVAILABLE as exc:
        raise StoreUnavailable(f"postgres is unavailable: {exc or type(exc).__name__}") from exc
    except asyncpg.InterfaceError as exc:
        if "closed" not in str(exc):
            raise
        raise StoreUnavailable(f"postgres is unavailable: {exc}") from exc


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


class PostgresStore:
    """A ``Store`` in a PostgreSQL database; open it with ``await PostgresStore.open(dsn)``."""

    def __init__(self, pool: asyncpg.Pool[asyncpg.Record], dsn: str, retention: int,
                 connect_timeout: float) -> None:
        if retention < 1:
            raise ValueError("event retention must be at least 1")
        self._pool = pool
        self._retention = retention
        self._watchers: set[asyncio.Event] = set()
        self._listener = _Listener(dsn, self._wake_watchers, connect_timeout)
        self._closed = False
        self._decoded = codec.DecodeCache()

    @classmethod
    async def open(cls, dsn: str, *, retention: int = EVENT_RETENTION, min_size: int = 1,
                   max_size: int = 10, connect_timeout: float = 10.0,
                   command_timeout: float = 60.0) -> PostgresStore:
        with _translate():
            pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size,
                                             timeout=connect_timeout,
                                             command_timeout=command_timeout)
        try:
            with _translate():
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

    async def create(self, res: Resource) -> Resource:
        async with self._transaction() as conn:
            rev = await _bump(conn)
            now = datetime.now(UTC)
            stored = res.with_meta(Meta(version=1, creation_time=now, modification_time=now,
                                        revision=rev))
            inserted = await conn.fetchval(
                f"INSERT INTO resources ({_COLUMNS}) "
                "VALUES ($1, $2, $3, $4::jsonb, $5::jsonb, $6, $7, $8, $9) "
                "ON CONFLICT (kind, mesh, name) DO NOTHING RETURNING 1",
                res.type, res.mesh, res.name, codec.labels_json(stored),
                codec.spec_json(stored), 1, now, now, rev)
            if inserted is None:
                raise codec.already_exists(res.type, res.name, res.mesh)
            await self._append(conn, rev, EventType.CREATED, stored)
        return stored

    async def update(self, res: Resource, expected_version: int) -> Resource:
        async with self._transaction() as conn:
            rev = await _bump(conn)
            now = datetime.now(UTC)
            created = await conn.fetchval(
                "UPDATE resources SET labels = $4::jsonb, spec = $5::jsonb, "
                "version = version + 1, modification_time = $6, revision = $7 "
                "WHERE kind = $1 AND mesh = $2 AND name = $3 AND version = $8 "
                "RETURNING creation_time",
                res.type, res.mesh, res.name, codec.labels_json(res), codec.spec_json(res),
                now, rev, expected_version)
            if created is None:
                actual = await conn.fetchval(
                    "SELECT version FROM resources WHERE kind = $1 AND mesh = $2 AND name = $3",
                    res.type, res.mesh, res.name)
                if actual is None:
                    raise codec.not_found(res.type, res.name, res.mesh)
                raise codec.stale(res.type, res.name, res.mesh, expected_version, int(actual))
            stored = res.with_meta(Meta(version=expected_version + 1, creation_time=created,
                                        modification_time=now, revision=rev))
            await self._append(conn, rev, EventType.UPDATED, stored)
        return stored

    async def delete(self, kind: str, name: str, mesh: str = "",
                     expected_version: int | None = None) -> None:
        async with self._transaction() as conn:
            rev = await _bump(conn)
            row = await conn.fetchrow(
                f"DELETE FROM resources WHERE kind = $1 AND mesh = $2 AND name = $3 "
                f"RETURNING {_COLUMNS}", kind, mesh, name)
            if row is None:
                raise codec.not_found(kind, name, mesh)
            current = _row_resource(row)
            if expected_version is not None and current.meta.version != expected_version:
                # Raising rolls the delete back.
                raise codec.stale(kind, name, mesh, expected_version, current.meta.version)
            await self._append(conn, rev, EventType.DELETED, current)

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
        await self._listener.close()
        try:
            async with asyncio.timeout(10):
                await self._pool.close()
        except _UNAVAILABLE:  # TimeoutError among them
            self._pool.terminate()

    # -- internals --------------------------------------------------------------------

    async def _events_after(self, cursor: int) -> builtins.list[Event]:
        async with self._connection() as conn:
            rows = await conn.fetch(
                "SELECT revision, type, kind, mesh, name, document FROM events "
                "WHERE revision > $1 ORDER BY revision LIMIT $2", cursor, WATCH_BATCH)
        if rows and rows[0]["revision"] != cursor + 1:
            raise RevisionCompacted(f"events before revision {rows[0]['revision']} "
                                    "are compacted")
        return [Event(int(r["revision"]), EventType(r["type"]),
                      codec.load_event_resource(r["kind"], r["mesh"], r["name"], r["document"]))
                for r in rows]

    async def _append(self, conn: Conn, rev: int, kind: EventType, res: Resource) -> None:
        await conn.execute(
            "INSERT INTO events (revision, type, kind, mesh, name, document) "
            "VALUES ($1, $2, $3, $4, $5, $6::jsonb)",
            rev, kind.value, res.type, res.mesh, res.name, codec.event_document(res))
        if rev > self._retention:
            await conn.execute("DELETE FROM events WHERE revision <= $1", rev - self._retention)

    def _resource(self, row: asyncpg.Record) -> Resource:
        key = (row["kind"], row["mesh"], row["name"], row["revision"], row["version"],
               row["modification_time"])
        return self._decoded.get(key, lambda: _row_resource(row))

    def _wake_watchers(self) -> None:
        for wake in self._watchers:
            wake.set()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreUnavailable("the store is closed")

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Conn]:
        self._check_open()
        with _translate():
            async with self._pool.acquire() as conn:
                yield conn

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Conn]:
        async with self._connection() as conn, conn.transaction():
            yield conn


class _Listener:
    """The LISTEN connection of one store: wakes its watchers, reconnects when lost."""

    def __init__(self, dsn: str, wake: Callable[[], None], connect_timeout: float) -> None:
        self._dsn = dsn
        self._wake = wake
        self._connect_timeout = connect_timeout
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="postgres-store-listener")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        backoff = RETRY_MIN
        while True:
            try:
                await self._listen_once()
                backoff = RETRY_MIN
            except (StoreUnavailable, StoreConfigError) as exc:
                log.warning("store listener: %s; reconnecting in %.2fs", exc.detail, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, RETRY_MAX)

    async def _listen_once(self) -> None:
        """Connect, LISTEN, wake everyone, then return when the connection is lost."""
        lost = asyncio.Event()
        with _translate():
            conn = await asyncpg.connect(self._dsn, timeout=self._connect_timeout)
        try:
            conn.add_termination_listener(lambda _conn: lost.set())
            with _translate():
                await conn.add_listener(CHANNEL, self._on_notify)
            # Notifications sent before LISTEN took effect are lost: whatever was
            # committed meanwhile is found by the re-read this wake-up causes.
            self._wake()
            while not lost.is_set():
                with suppress(TimeoutError):
                    async with asyncio.timeout(KEEPALIVE):
                        await lost.wait()
                    return
                # Quiet for a while: prove the connection still carries traffic, so a
                # half-dead one (no RST after a partition) is not trusted forever.
                with _translate():
                    await conn.execute("SELECT 1", timeout=self._connect_timeout)
        finally:
            with suppress(*_UNAVAILABLE, asyncpg.InterfaceError):
                async with asyncio.timeout(5):
                    await conn.close()
            if not conn.is_closed():
                conn.terminate()

    def _on_notify(self, _conn: object, _pid: int, _channel: str, _payload: object) -> None:
        self._wake()


async def _bump(conn: Conn) -> int:
    """The next revision; locks the counter row until this transaction ends."""
    return int(await conn.fetchval(
        "UPDATE store_revision SET value = value + 1 RETURNING value"))


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
