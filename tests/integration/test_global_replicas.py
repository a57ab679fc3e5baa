"""Global replicas on one real PostgreSQL: one leader, a takeover, a paused leader fenced.

Real ``gossamer global run --store postgres://…`` processes with a 3 s lease. Exactly
one reports ``gossamer_leader 1`` on ``/metrics`` (and ``leader`` in ``/_check``); after
``kill -9`` of the leader another takes over within 15 s. A leader stopped with SIGSTOP
past its lease loses it to another replica; woken with SIGCONT it reports itself not
leader at its first answer, never leads beside the new one, and the lease row in the
database names the new holder at a newer epoch (a write fenced with the old epoch is
refused by the store: tests/integration/test_election_postgres.py).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.integration.cli_env import Proc, _clean_env, _free_port
from tests.waiting import eventually_sync

pytestmark = pytest.mark.postgres

LEASE = 3.0
TAKEOVER = 15.0
_GAUGE = re.compile(r'^gossamer_leader\{lease="global"\} (\S+)$', re.M)


def start_global(tmp: Path, name: str, store: str) -> Proc:
    data = tmp / name
    args = ["global", "run", "--data-dir", str(data), "--store", store,
            "--api-addr", f"127.0.0.1:{_free_port()}",
            "--sync-addr", f"127.0.0.1:{_free_port()}", "--leader-lease", f"{LEASE:g}s"]
    env = _clean_env(tmp / f"{name}-config.yaml")
    return Proc(args, tmp / f"{name}.log", args[args.index("--api-addr") + 1].join(
        ["http://", ""]), env).start()


def leading(proc: Proc) -> bool:
    text = httpx.get(f"{proc.api}/metrics", timeout=2.0).text
    match = _GAUGE.search(text)
    assert match, "no gossamer_leader gauge on /metrics"
    return float(match.group(1)) == 1.0


def check(proc: Proc, data: Path) -> dict[str, object]:
    token = (data / "admin-token").read_text().strip()
    body = httpx.get(f"{proc.api}/_check", timeout=5.0,
                     headers={"Authorization": f"Bearer {token}"}).json()
    leader = body["leader"]
    assert isinstance(leader, dict)
    return leader


def sync_addr(proc: Proc) -> tuple[str, int]:
    host, port = proc.args[proc.args.index("--sync-addr") + 1].rsplit(":", 1)
    return host, int(port)


def tls_verifies(addr: tuple[str, int], ca: Path) -> bool:
    """A TLS handshake with the zone sync port, verified with ``ca`` (what a zone given
    ``--global-ca`` does before its gRPC calls)."""
    context = ssl.create_default_context(cafile=str(ca))
    context.set_alpn_protocols(["h2"])
    with socket.create_connection(addr, timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=addr[0]) as tls:
        return tls.version() is not None


def lease_row(url: str) -> tuple[str, int]:
    async def read() -> tuple[str, int]:
        conn = await asyncpg.connect(url)
        try:
            row = await conn.fetchrow("SELECT holder, epoch FROM leases WHERE name = 'global'")
        finally:
            await conn.close()
        assert row is not None
        return str(row["holder"]), int(row["epoch"])

    return asyncio.run(read())


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for proc in started:
        if proc.popen is not None and proc.popen.poll() is None:
            os.kill(proc.popen.pid, signal.SIGCONT)
            proc.stop()


def test_one_leader_a_takeover_after_kill_and_a_paused_leader_fenced(
        tmp_path: Path, postgres_db_url: str, procs: list[Proc]) -> None:
    a = start_global(tmp_path, "a", postgres_db_url)
    procs.append(a)
    eventually_sync(lambda: leading(a), 15, "the first replica to lead")
    b = start_global(tmp_path, "b", postgres_db_url)
    procs.append(b)
    eventually_sync(lambda: check(b, tmp_path / "b")["role"] == "follower", 15,
                    "the second replica to see the first lead")
    assert leading(a) and not leading(b)
    # One admin token and one CA for every replica: a's work against b.
    info_a, info_b = check(a, tmp_path / "a"), check(b, tmp_path / "a")
    assert info_a["role"] == "leader" and info_b["leader"] == info_a["holder"]
    assert (tmp_path / "b" / "admin-token").read_text() == (
        tmp_path / "a" / "admin-token").read_text()
    assert (tmp_path / "b" / "admin-token").stat().st_mode & 0o777 == 0o600
    assert tls_verifies(sync_addr(b), tmp_path / "a" / "tls" / "ca.pem")

    # kill -9 the leader: the other takes over within the bound.
    assert a.popen is not None
    killed = time.monotonic()
    a.popen.kill()
    a.popen.wait()
    eventually_sync(lambda: leading(b), TAKEOVER, "the survivor to take over", interval=0.1)
    print(f"takeover after kill -9: {time.monotonic() - killed:.1f}s (lease {LEASE}s)")
    b_holder, b_epoch = lease_row(postgres_db_url)
    assert b_holder == check(b, tmp_path / "b")["holder"]

    # SIGSTOP the leader past its lease: a third replica takes over; SIGCONT: fenced.
    c = start_global(tmp_path, "c", postgres_db_url)
    procs.append(c)
    assert b.popen is not None
    os.kill(b.popen.pid, signal.SIGSTOP)
    stopped = time.monotonic()
    eventually_sync(lambda: leading(c), TAKEOVER, "a replica to replace the paused leader",
                    interval=0.1)
    print(f"takeover from a paused leader: {time.monotonic() - stopped:.1f}s")
    os.kill(b.popen.pid, signal.SIGCONT)
    assert not leading(b)  # its first answer after waking
    c_holder, c_epoch = lease_row(postgres_db_url)
    assert c_holder == check(c, tmp_path / "c")["holder"] and c_epoch > b_epoch
    # Over a few lease renewals, never two leaders; the woken one follows the new one.
    deadline = time.monotonic() + LEASE
    while time.monotonic() < deadline:
        assert leading(c) and not leading(b)
        time.sleep(0.1)  # pacing the samples, not waiting for anything
    assert check(b, tmp_path / "b")["leader"] == c_holder
