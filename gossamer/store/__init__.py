"""Stores: the protocol (``base``), its backends, and ``open_store`` to pick one by URL.

The backends are imported only when chosen, so importing ``gossamer.store`` pulls in
neither aiosqlite nor asyncpg.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from gossamer.errors import StoreConfigError
from gossamer.store.base import EVENT_RETENTION, Store

__all__ = ["STORE_URL_FORMS", "Store", "open_store", "shared_store"]

STORE_URL_FORMS = ("memory", "sqlite", "sqlite:///ABSOLUTE/PATH.db",
                   "postgres://USER@HOST:PORT/DB", "postgresql://...")
SQLITE_FILE = "store.db"


async def open_store(url: str, data_dir: Path, *, retention: int = EVENT_RETENTION,
                     cross_process_watch: bool = False) -> Store:
    """Open the store ``url`` names; ``data_dir`` holds the default SQLite file.

    ``memory``: a fresh in-memory store. ``sqlite``: ``data_dir/store.db`` (directories
    created). ``sqlite:///abs/path.db``: that file. ``postgres://…``/``postgresql://…``:
    a PostgreSQL database, migrated to the current schema. ``retention`` is how many
    events are kept for resuming watches; ``cross_process_watch`` makes SQLite watchers
    also notice writes of other processes on the same file (a bounded poll; Postgres
    always does, through LISTEN/NOTIFY). Raises ``StoreConfigError`` for a URL that
    names no store and ``StoreUnavailable`` when the store cannot be reached.
    """
    kind, target = parse_store_url(url, data_dir)
    if kind == "memory":
        from gossamer.store.memory import MemoryStore

        return MemoryStore(retention=retention)
    if kind == "sqlite":
        from gossamer.store.sqlite import SqliteStore

        path = Path(target)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreConfigError(f"cannot create the directory for {path}: {exc}") from exc
        return await SqliteStore.open(path, retention=retention,
                                      cross_process=cross_process_watch)
    from gossamer.store.postgres import PostgresStore

    return await PostgresStore.open(target, retention=retention)


def shared_store(url: str) -> bool:
    """Whether other processes may write the store ``url`` names (PostgreSQL, shared by
    replicas); a SQLite file or a memory store has this process as its one writer."""
    return url.startswith(("postgres://", "postgresql://"))


def parse_store_url(url: str, data_dir: Path) -> tuple[str, str]:
    """``(backend, target)``: the backend name and its file path or DSN."""
    if not isinstance(url, str) or not url.strip():
        raise _bad(url, "empty")
    url = url.strip()
    if url == "memory":
        return "memory", ""
    if url == "sqlite":
        return "sqlite", str(Path(data_dir) / SQLITE_FILE)
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        if parts.netloc or not parts.path.startswith("/") or parts.query or parts.fragment:
            raise _bad(url, "expected sqlite:///ABSOLUTE/PATH (three slashes, no host)")
        if parts.path.endswith("/"):
            raise _bad(url, "the path names a directory, not a file")
        return "sqlite", parts.path
    if parts.scheme in ("postgres", "postgresql"):
        if not parts.netloc and "host=" not in parts.query:
            raise _bad(url, "expected postgres://USER@HOST:PORT/DATABASE")
        return "postgres", url
    raise _bad(url, "unknown store")


def _bad(url: object, why: str) -> StoreConfigError:
    shown = _redact(url) if isinstance(url, str) else repr(url)
    return StoreConfigError(f"invalid store URL {shown}: {why}; expected one of "
                            + ", ".join(STORE_URL_FORMS))


def _redact(url: str) -> str:
    """The URL without its password, fit for an error message or a log line."""
    parts = urlsplit(url)
    if parts.password is None:
        return repr(url)
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return repr(parts._replace(netloc=netloc).geturl())
