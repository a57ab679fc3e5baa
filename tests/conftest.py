"""Fixtures shared by every test layer. Keep each one small and generic.

PostgreSQL: one throwaway cluster per test session (``tests/pg.py``), started on first
use. ``postgres_cluster`` is the cluster itself (``stop()``/``start()`` for outage
tests), ``postgres_url`` a database made once for the session, ``postgres_db_url`` a
fresh empty database for one test (dropped afterwards). Without PostgreSQL they skip
with the reason, or fail when ``GOSSAMER_REQUIRE_POSTGRES=1``.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

from tests.pg import PostgresCluster, PostgresUnavailable

_databases = itertools.count(1)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    try:
        cluster = PostgresCluster.create()
    except PostgresUnavailable as exc:
        reason = f"PostgreSQL is unavailable: {exc}"
        if os.environ.get("GOSSAMER_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason)
        pytest.skip(f"SKIPPING POSTGRES TESTS — {reason}")
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="session")
def postgres_url(postgres_cluster: PostgresCluster) -> str:
    """A database on the session's cluster, shared by every test that asks for it."""
    return postgres_cluster.create_database("gossamer_session")


@pytest.fixture
def postgres_db_url(postgres_cluster: PostgresCluster) -> Iterator[str]:
    """A fresh empty database for this test only (dropped afterwards)."""
    name = f"test_{next(_databases)}"
    url = postgres_cluster.create_database(name)
    yield url
    if postgres_cluster.is_running():
        postgres_cluster.drop_database(name)
