"""Leases in PostgreSQL: leader election with a fencing token (``gossamer.election``).

Theory of operation. A lease is a ``leases`` row (holder, epoch, expires_at). ``acquire``
is one statement, so it is atomic and uses the database's clock only: it inserts the row,
or renews it for its holder, or takes it over when it has expired; the epoch grows
whenever the holder changes or the lease had lapsed. A refusal (another holder, not
expired) returns the holder.

Fencing: a write of the singleton work first reads its lease row ``FOR SHARE`` inside the
write's own transaction and goes on only if holder and epoch are the fence's and the lease
has not expired. The share lock makes a takeover (an UPDATE of that row) wait until the
write commits, so every write of an old term commits before the new term begins, and
none after. Renewals run on a dedicated connection, so a busy pool (API load) never
delays them; it is opened again after a failure.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from typing import TYPE_CHECKING, Any

import asyncpg

from gossamer.election.core import Fence
from gossamer.election.leases import Grant, Held, NotLeader
from gossamer.model.base import Resource
from gossamer.store.base import Store, WriteOp
from gossamer.store.pg_connection import UNAVAILABLE, translate

if TYPE_CHECKING:
    from gossamer.store.postgres import Conn

_ACQUIRE = """
INSERT INTO leases AS l (name, holder, epoch, expires_at)
VALUES ($1, $2, 1, now() + make_interval(secs => $3))
ON CONFLICT (name) DO UPDATE SET
    holder = EXCLUDED.holder,
    epoch = CASE WHEN l.holder = EXCLUDED.holder AND l.expires_at > now()
                 THEN l.epoch ELSE l.epoch + 1 END,
    expires_at = EXCLUDED.expires_at
WHERE l.holder = EXCLUDED.holder OR l.expires_at <= now()
RETURNING epoch
"""


async def check_fence(conn: Conn, fence: Fence) -> None:
    """Inside a write's transaction: ``NotLeader`` unless ``fence`` holds its lease."""
    held = await conn.fetchval(
        "SELECT 1 FROM leases WHERE name = $1 AND holder = $2 AND epoch = $3 "
        "AND expires_at > now() FOR SHARE", fence.name, fence.holder, fence.epoch)
    if held is None:
        raise NotLeader(f"the {fence.name} lease of epoch {fence.epoch} is no longer held "
                        f"by {fence.holder}: the write is fenced off")


class PostgresLeases:
    def __init__(self, dsn: str, connect_timeout: float) -> None:
        self._dsn = dsn
        self._connect_timeout = connect_timeout
        self._conn: asyncpg.Connection[Any] | None = None
        self._lock = asyncio.Lock()  # one statement at a time on the one connection

    async def acquire(self, name: str, holder: str, ttl: float) -> Grant | Held:
        async with self._lock, self._statement() as conn:
            epoch = await conn.fetchval(_ACQUIRE, name, holder, float(ttl))
            if epoch is not None:
                return Grant(int(epoch))
            current = await conn.fetchval("SELECT holder FROM leases WHERE name = $1", name)
        return Held(str(current or ""))

    async def release(self, name: str, holder: str, epoch: int) -> None:
        async with self._lock, self._statement() as conn:
            await conn.execute("UPDATE leases SET expires_at = now() WHERE name = $1 "
                               "AND holder = $2 AND epoch = $3 AND expires_at > now()",
                               name, holder, epoch)

    async def write(self, store: Store, ops: Sequence[WriteOp],
                    fence: Fence) -> builtins.list[Resource | None]:
        from gossamer.store.postgres import PostgresStore

        if not isinstance(store, PostgresStore):
            raise TypeError("PostgreSQL leases fence writes to a PostgreSQL store only")
        return await store.write(ops, fence=fence)

    async def close(self) -> None:
        await self._drop()

    @asynccontextmanager
    async def _statement(self) -> AsyncIterator[asyncpg.Connection[Any]]:
        """The lease connection (opened when needed) for one use; dropped if the use
        fails or is cancelled mid-statement, so the next one starts afresh."""
        with translate():
            if self._conn is None or self._conn.is_closed():
                self._conn = await asyncpg.connect(self._dsn, timeout=self._connect_timeout)
            try:
                yield self._conn
            except BaseException:
                await self._drop()
                raise

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            with suppress(*UNAVAILABLE, asyncpg.InterfaceError):
                conn.terminate()
