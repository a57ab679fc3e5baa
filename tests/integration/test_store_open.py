"""Opening a store: ``open_store`` refuses a bad URL, and the SQLite store makes its file in
the data directory, private with its journal.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gossamer.errors import StoreConfigError
from gossamer.store import open_store
from gossamer.store.sqlite import SqliteStore
from tests.integration.store_backends import mesh


@pytest.mark.parametrize("url", ["", "mysql://db", "sqlite://host/x.db", "sqlite:relative.db",
                                 "sqlite:///tmp/dir/", "postgres://", "file:///x"])
async def test_open_store_refuses_a_bad_url(url: str, tmp_path: Path) -> None:
    with pytest.raises(StoreConfigError):
        await open_store(url, tmp_path)


async def test_open_store_sqlite_makes_its_file_in_the_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "a" / "b"
    store = await open_store("sqlite", data_dir)
    try:
        await store.create(mesh("default"))
    finally:
        await store.close()
    assert (data_dir / "store.db").is_file()


async def test_the_sqlite_store_and_its_journal_are_private(tmp_path: Path) -> None:
    """The file holds GlobalSecrets (root CA and token signing keys): 0600, also when an
    older version left it readable by others."""
    old = tmp_path / "old.db"
    old.touch(mode=0o644)
    old.chmod(0o644)
    for path in (tmp_path / "store.db", old):
        store = await SqliteStore.open(path)
        try:
            await store.create(mesh("default"))
            modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.glob(path.name + "*")}
        finally:
            await store.close()
        assert modes and set(modes.values()) == {0o600}, modes

