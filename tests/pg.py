"""A throwaway PostgreSQL cluster for tests and benchmarks.

``PostgresCluster.create()`` finds the server binaries (installing Debian's
``postgresql`` with apt-get when they are missing and we are root), runs ``initdb`` in a
fresh directory under ``/tmp`` (as the ``postgres`` user when root, since Postgres
refuses to run as root), and starts it on a free port on 127.0.0.1 with its unix socket
in the same directory and ``fsync=off``. ``stop()``/``start()`` restart the same cluster
(for outage tests); ``destroy()`` stops it and removes everything.

Used by ``tests/conftest.py`` (fixtures ``postgres_cluster``, ``postgres_url``,
``postgres_db_url``) and by ``tests/bench``. ``PostgresUnavailable`` says why no cluster
could be had; the fixtures turn it into a skip (or a failure with
``GOSSAMER_REQUIRE_POSTGRES=1``).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PG_ROOT = Path("/usr/lib/postgresql")
SUPERUSER = "postgres"
SETTINGS = {
    "fsync": "off",
    "full_page_writes": "off",
    "max_connections": "300",
    "shared_buffers": "64MB",
    "log_min_messages": "warning",
}
_db_counter = itertools.count(1)


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server can be run here; the message says why."""


def find_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<v>/bin`` with ``initdb``."""
    if not PG_ROOT.is_dir():
        return None
    versions = [p for p in PG_ROOT.iterdir() if (p / "bin" / "initdb").exists()]
    if not versions:
        return None
    newest = max(versions, key=lambda p: tuple(int(x) for x in p.name.split(".") if x.isdigit()))
    return newest / "bin"


def ensure_binaries() -> Path:
    """The server binaries (``PG_BIN`` if set), installed with apt-get when missing."""
    override = os.environ.get("PG_BIN")
    if override:
        if not (Path(override) / "initdb").exists():
            raise PostgresUnavailable(f"PG_BIN={override} holds no initdb")
        return Path(override)
    found = find_bin_dir()
    if found is not None:
        return found
    if os.geteuid() != 0:
        raise PostgresUnavailable("PostgreSQL server binaries are not installed and we are "
                                  "not root to install them (apt-get install postgresql)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
        result = subprocess.run(cmd, env=env, capture_output=True, text=True)
    found = find_bin_dir()
    if found is None:
        what = "failed" if result.returncode else f"left no initdb in {PG_ROOT}/*/bin"
        raise PostgresUnavailable(f"apt-get install postgresql {what}: "
                                  + (result.stderr or result.stdout)[-2000:])
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PostgresCluster:
    root: Path
    bin_dir: Path
    port: int
    as_user: str | None  # run server commands as this user (when we are root)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root

    @property
    def log_file(self) -> Path:
        return self.root / "postgres.log"

    @classmethod
    def create(cls) -> PostgresCluster:
        """initdb and start a new cluster; ``PostgresUnavailable`` if it cannot be done."""
        bin_dir = ensure_binaries()
        as_user = SUPERUSER if os.geteuid() == 0 else None
        root = Path(tempfile.mkdtemp(prefix="gossamer-pg-", dir="/tmp"))
        cluster = cls(root=root, bin_dir=bin_dir, port=free_port(), as_user=as_user)
        try:
            cluster._initdb()
            cluster._start_on_a_free_port()
        except subprocess.CalledProcessError as exc:
            cluster.destroy()
            raise PostgresUnavailable(f"{' '.join(exc.cmd)} failed: {exc.stderr}") from exc
        except BaseException:
            cluster.destroy()
            raise
        return cluster

    def url(self, database: str = "postgres") -> str:
        """The database over the cluster's unix socket (a third of TCP's round trip here)."""
        return (f"postgresql://{SUPERUSER}@/{database}"
                f"?host={self.socket_dir}&port={self.port}")

    def tcp_url(self, database: str = "postgres") -> str:
        """The database over TCP on 127.0.0.1."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        self._pg_ctl("start", "-w", "-t", "60", "-l", str(self.log_file))

    def stop(self) -> None:
        self._pg_ctl("stop", "-w", "-t", "60", "-m", "fast")

    def is_running(self) -> bool:
        return self._run([str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "status"],
                         check=False).returncode == 0

    def psql(self, sql: str, database: str = "postgres") -> str:
        cmd = [str(self.bin_dir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
               "-h", str(self.socket_dir), "-p", str(self.port), "-U", SUPERUSER,
               "-d", database, "-c", sql]
        return self._run(cmd, as_server=False).stdout

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; returns its URL."""
        name = name or f"test_{os.getpid()}_{next(_db_counter)}"
        # FILE_COPY: ten times faster than WAL_LOG for a small template with fsync off.
        self.psql(f'CREATE DATABASE "{name}" STRATEGY FILE_COPY')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError, OSError):
            if self.data_dir.exists() and self.is_running():
                self._pg_ctl("stop", "-w", "-t", "30", "-m", "immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    # -- internals --------------------------------------------------------------------

    def _initdb(self) -> None:
        if self.as_user is not None:
            user = pwd.getpwnam(self.as_user)
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self._run([str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "--no-sync",
                   "-A", "trust", "-U", SUPERUSER, "-E", "UTF8", "--locale=C"])

    def _configure(self) -> None:
        settings = {**SETTINGS, "port": str(self.port), "listen_addresses": "'127.0.0.1'",
                    "unix_socket_directories": f"'{self.socket_dir}'"}
        # postgresql.auto.conf is read last, so these win over postgresql.conf.
        lines = [f"{key} = {value}" for key, value in settings.items()]
        (self.data_dir / "postgresql.auto.conf").write_text("\n".join(lines) + "\n")

    def _start_on_a_free_port(self, attempts: int = 3) -> None:
        for attempt in range(attempts):
            self._configure()
            try:
                self.start()
                return
            except subprocess.CalledProcessError:
                if attempt == attempts - 1:
                    raise PostgresUnavailable("postgres did not start: "
                                              + self._log_tail()) from None
                self.port = free_port()  # someone took the port between bind and start

    def _log_tail(self) -> str:
        try:
            return self.log_file.read_text()[-2000:]
        except OSError:
            return "(no log)"

    def _pg_ctl(self, *args: str) -> None:
        self._run([str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), *args])

    def _run(self, cmd: list[str], as_server: bool = True,
             check: bool = True) -> subprocess.CompletedProcess[str]:
        if as_server and self.as_user is not None:
            cmd = ["runuser", "-u", self.as_user, "--", *cmd]
        result = subprocess.run(cmd, capture_output=True, text=True, cwd="/tmp")
        if check and result.returncode != 0:
            raise subprocess.CalledProcessError(result.returncode, cmd, result.stdout,
                                                result.stderr)
        return result


@contextlib.contextmanager
def running_cluster() -> Iterator[PostgresCluster]:
    """A started cluster for the length of the ``with`` block, removed afterwards."""
    cluster = PostgresCluster.create()
    try:
        yield cluster
    finally:
        cluster.destroy()
