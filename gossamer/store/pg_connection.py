"""Talking to PostgreSQL: asyncpg's errors as Gossamer's, and the LISTEN connection.

``translate`` is the boundary every statement of the Postgres store runs inside:
connection failures are ``StoreUnavailable``, unique violations and serialization failures
``Conflict``, a missing database or refused credentials ``StoreConfigError``.

``Listener`` is the one LISTEN connection of a store: it wakes every local watcher on
each notification, and again after it reconnects, since notifications sent while it was
away are lost (a woken watcher simply re-reads from its last revision).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

import asyncpg

from gossamer.errors import Conflict, StoreConfigError, StoreUnavailable

log = logging.getLogger("gossamer.store.postgres")

CHANNEL = "gossamer_events"
RETRY_MIN, RETRY_MAX = 0.05, 2.0
KEEPALIVE = 30.0  # seconds of silence before the LISTEN connection is probed

UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable; ConnectionError is one
    TimeoutError,
    asyncpg.PostgresConnectionError,  # SQLSTATE 08: the connection failed or is gone
    asyncpg.exceptions.OperatorInterventionError,  # 57: shutdown, cannot connect now
    asyncpg.exceptions.InsufficientResourcesError,  # 53: too many connections, disk full
    asyncpg.exceptions.ReadOnlySQLTransactionError,  # a standby, or a failover in progress
)
CONFIG: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.InvalidAuthorizationSpecificationError,  # 28: bad user/password
    asyncpg.exceptions.InvalidCatalogNameError,  # 3D000: no such database
    asyncpg.exceptions.ClientConfigurationError,  # a malformed DSN
)
@contextmanager
def translate() -> Iterator[None]:
    try:
        yield
    except asyncpg.UniqueViolationError as exc:
        raise Conflict(f"the store refused the write: {exc}") from exc
    except asyncpg.exceptions.TransactionRollbackError as exc:  # serialization, deadlock
        raise Conflict(f"the write collided with another one; retry it: {exc}") from exc
    except CONFIG as exc:
        raise StoreConfigError(f"postgres: {exc}") from exc
    except UNAVAILABLE as exc:
        raise StoreUnavailable(f"postgres is unavailable: {exc or type(exc).__name__}") from exc
    except asyncpg.InterfaceError as exc:
        if "closed" not in str(exc):
            raise
        raise StoreUnavailable(f"postgres is unavailable: {exc}") from exc



class Listener:
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
        with translate():
            conn = await asyncpg.connect(self._dsn, timeout=self._connect_timeout)
        try:
            conn.add_termination_listener(lambda _conn: lost.set())
            with translate():
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
                with translate():
                    await conn.execute("SELECT 1", timeout=self._connect_timeout)
        finally:
            with suppress(*UNAVAILABLE, asyncpg.InterfaceError):
                async with asyncio.timeout(5):
                    await conn.close()
            if not conn.is_closed():
                conn.terminate()

    def _on_notify(self, _conn: object, _pid: int, _channel: str, _payload: object) -> None:
        self._wake()
