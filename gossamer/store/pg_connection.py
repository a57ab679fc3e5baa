"""Talking to PostgreSQL: asyncpg's errors as Gossamer's, and the LISTEN connection.

``translate`` is the boundary every statement of the Postgres store runs inside:
connection failures are ``StoreUnavailable``, unique violations and serialization failures
``Conflict``, a missing database or refused credentials ``StoreConfigError``.

``Listener`` is the one LISTEN connection of a store: it wakes every local watcher on
each notification, and again after it reconnects, since notifications sent while it was
away are lost (a woken watcher simply re-reads from its last revision).

It is also how the store knows the database answers (``Liveness``): the listener probes
its connection with ``SELECT 1`` every ``PROBE_INTERVAL`` (bounded by ``PROBE_TIMEOUT``)
and marks the database down when the connection is lost or a reconnect fails, and up
once it is connected again; each time it goes down the pool's idle connections are
expired, so none from before the outage is used after it. A database that refuses
connections (stopped, restarting) makes every operation fail fast by itself. One that
is *silent* (a probe or a connect timed out: paused, cut off, no RST) would make them
wait for asyncpg's timeouts, so while it is silent every operation fails at once with
``StoreUnavailable`` (the API's 503), and going silent terminates the connections
operations hold: what waits on them fails within about ``PROBE_INTERVAL +
PROBE_TIMEOUT``. A cancelled operation (a control plane stopping) terminates its
connection instead of waiting for a ROLLBACK the database may never answer. A database
that is only busy (writers queued on the revision lock) still answers the probe, so
slow writes are not cut short.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import asyncpg

from gossamer.errors import Conflict, StoreConfigError, StoreUnavailable

log = logging.getLogger("gossamer.store.postgres")

CHANNEL = "gossamer_events"
RETRY_MIN, RETRY_MAX = 0.05, 2.0
PROBE_INTERVAL = 0.5  # seconds between two probes of the LISTEN connection
PROBE_TIMEOUT = 1.0  # a probe (or the listener's connect) slower than this: down
CLOSE_TIMEOUT = 2.0  # a graceful close slower than this terminates the connection

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
class _OutageWithoutTraceback(logging.Filter):
    """asyncpg's pool logs each failed attempt to refill itself with a traceback; during
    an outage that is expected, so the line keeps the reason and drops the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, UNAVAILABLE):
            record.msg, record.args = f"{record.getMessage()}: {exc}", ()
            record.exc_info = None
        return True


logging.getLogger("asyncpg.pool").addFilter(_OutageWithoutTraceback())


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
    except asyncpg.InternalClientError as exc:
        # A pooled connection the server ended (a FATAL at its shutdown) handed out before
        # asyncpg saw the end: its protocol refuses the next statement. Only that case.
        if "another operation" not in str(exc):
            raise
        raise StoreUnavailable(f"postgres is unavailable: the connection was ended by "
                               f"the server ({exc})") from exc
    except asyncpg.InterfaceError as exc:
        if "closed" not in str(exc):
            raise
        raise StoreUnavailable(f"postgres is unavailable: {exc}") from exc



class Liveness:
    """Whether the database answers, and the connections operations hold meanwhile."""

    def __init__(self) -> None:
        self.down: str | None = None  # why, while the database does not answer
        self.silent = False  # down by a timeout: nothing refuses, everything would wait
        self._held: set[Any] = set()
        # Called when it goes down: the store expires its pool's idle connections, which
        # the refused operations never touch, so none from before is used after.
        self.on_down: Callable[[], Awaitable[None]] | None = None

    def check(self) -> None:
        """Raise ``StoreUnavailable`` at once while the database is silent."""
        if self.silent:
            raise StoreUnavailable(f"the database does not answer ({self.down}): refused "
                                   f"without touching it, retry later")

    def unavailable(self, detail: str) -> StoreUnavailable:
        """The error of an operation that failed while the database is down."""
        return StoreUnavailable(f"the database does not answer ({self.down}; {detail}); "
                                f"retry later")

    async def mark_down(self, reason: str, *, silent: bool) -> None:
        if self.down is None:
            log.warning("postgres does not answer: %s", reason)
        self.down, self.silent = reason, silent
        if silent:
            for conn in list(self._held):
                conn.terminate()  # what waits on it fails now, as StoreUnavailable
        if self.on_down is not None:
            await self.on_down()

    def mark_up(self) -> None:
        if self.down is not None:
            log.info("postgres answers again")
        self.down, self.silent = None, False

    @contextmanager
    def holding(self, conn: Any) -> Iterator[None]:
        """``conn`` is in use by an operation: terminated if the database goes down, and
        on a cancellation (never a graceful reset against a database that may be gone)."""
        self._held.add(conn)
        try:
            yield
        except (asyncio.CancelledError, asyncpg.InternalClientError):
            conn.terminate()  # (the latter: a connection in a broken state, never reused)
            raise
        finally:
            self._held.discard(conn)


class Listener:
    """The LISTEN connection of one store: wakes its watchers, reconnects when lost, and
    tells ``liveness`` whether the database answers."""

    def __init__(self, dsn: str, wake: Callable[[], None], connect_timeout: float,
                 liveness: Liveness | None = None) -> None:
        self._dsn = dsn
        self._wake = wake
        self._connect_timeout = min(connect_timeout, PROBE_TIMEOUT)
        self.liveness = liveness or Liveness()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="postgres-store-listener")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError, TimeoutError):
                # asyncpg may finish a connect before it sees the cancellation: bounded.
                async with asyncio.timeout(CLOSE_TIMEOUT + self._connect_timeout):
                    await self._task
            self._task = None

    async def _run(self) -> None:
        backoff = RETRY_MIN
        while True:
            try:
                await self._listen_once()
                backoff = RETRY_MIN
                await self.liveness.mark_down("the connection to postgres was lost",
                                              silent=False)
            except (StoreUnavailable, StoreConfigError) as exc:
                await self.liveness.mark_down(
                    exc.detail, silent=isinstance(exc.__cause__, TimeoutError))
                log.warning("store listener: %s; reconnecting in %.2fs", exc.detail, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, RETRY_MAX)

    async def _listen_once(self) -> None:
        """Connect, LISTEN, wake everyone, then probe until the connection is lost."""
        lost = asyncio.Event()
        with translate():
            conn = await asyncpg.connect(self._dsn, timeout=self._connect_timeout)
        try:
            conn.add_termination_listener(lambda _conn: lost.set())
            with translate():
                await conn.add_listener(CHANNEL, self._on_notify)
            self.liveness.mark_up()
            # Notifications sent before LISTEN took effect are lost: whatever was
            # committed meanwhile is found by the re-read this wake-up causes.
            self._wake()
            while not lost.is_set():
                with suppress(TimeoutError):
                    async with asyncio.timeout(PROBE_INTERVAL):
                        await lost.wait()
                    return
                # Prove the database still answers, so a paused or cut-off one (no RST)
                # is known within a second and the store stops waiting on it.
                with translate():
                    await conn.execute("SELECT 1", timeout=PROBE_TIMEOUT)
        except StoreUnavailable:
            conn.terminate()  # it did not answer: no goodbye it would not answer either
            raise
        finally:
            if not conn.is_closed() and self.liveness.down is None:
                with suppress(*UNAVAILABLE, asyncpg.InterfaceError):
                    async with asyncio.timeout(CLOSE_TIMEOUT):
                        await conn.close()
            if not conn.is_closed():
                conn.terminate()

    def _on_notify(self, _conn: object, _pid: int, _channel: str, _payload: object) -> None:
        self._wake()
