"""A zone given several ``--global`` addresses follows the global to whichever answers,
all real processes (``gossamer global run``, ``gossamer zone run``) over real gRPC and
TLS: two global replicas need leader election, so one global stands for them, reachable
at one of the two addresses at a time.

- The first address refuses connections: the zone connects through the second.
- The global is killed and started again on the first address (the second now refuses):
  the zone's broken stream moves there within seconds and receives what changed.
- One name with two address records (the zone's own /etc/hosts, bind-mounted in a mount
  namespace of its own: root): the global answers on one record, then, restarted, only
  on the other, and the zone follows it there (gRPC's resolver tries each record).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.federation_env import BEAT, DEAD_AFTER, timeout_policy
from tests.integration.test_federation_restarts import GlobalProcess
from tests.pg import free_port
from tests.waiting import eventually

REPO = Path(__file__).resolve().parents[2]
MOVE_WITHIN = 10.0  # seconds from the global answering on the other address to the zone in sync


class ZoneProcess:
    """``gossamer zone run`` federated with the given ``--global`` addresses."""

    def __init__(self, data_dir: Path, urls: list[str], token: Path, ca: Path,
                 wrap: list[str] | None = None) -> None:
        self.data_dir = data_dir
        self.wrap = wrap or []  # a command the zone runs under (unshare ...)
        self.api_port = free_port()
        self.log = data_dir.parent / "zone.log"
        self.args = ["zone", "run", "--zone", "east", "--data-dir", str(data_dir),
                     "--api-addr", f"127.0.0.1:{self.api_port}",
                     "--xds-addr", f"127.0.0.1:{free_port()}",
                     "--global", ",".join(urls), "--token-file", str(token),
                     "--global-ca", str(ca), "--heartbeat-interval", f"{BEAT}s",
                     "--heartbeat-timeout", f"{DEAD_AFTER}s"]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([*self.wrap,
                                          str(Path(sys.executable).parent / "gossamer"),
                                          *self.args], env=env, stdout=log,
                                         stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)

    async def timeout_of(self, name: str) -> str | None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"the zone exited: {self.log.read_text()[-2000:]}")
        token_file = self.data_dir / "admin-token"
        if not token_file.exists():
            return None
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.api_port}",
                                     headers={"Authorization":
                                              f"Bearer {token_file.read_text().strip()}"}) as c:
            r = await c.get(f"/meshes/default/meshtimeouts/{name}")
        if r.status_code == 404:
            return None
        r.raise_for_status()
        return str(r.json()["spec"]["to"][0]["default"]["http"]["requestTimeout"])

    async def holds(self, expect: dict[str, str | None]) -> bool:
        return all([await self.timeout_of(n) == v for n, v in expect.items()])


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[list[GlobalProcess | ZoneProcess]]:
    running: list[GlobalProcess | ZoneProcess] = []
    yield running
    for p in reversed(running):
        p.kill() if isinstance(p, GlobalProcess) else p.stop()


async def test_a_zone_follows_the_global_across_its_addresses(
        tmp_path: Path, processes: list[GlobalProcess | ZoneProcess]) -> None:
    global_cp = GlobalProcess(tmp_path / "global")
    first, second = free_port(), global_cp.sync_port  # nothing listens on first yet
    processes.append(global_cp)
    await global_cp.start()
    await global_cp.put(timeout_policy("keep", 5))
    await global_cp.put(timeout_policy("change", 5))
    token = await global_cp.zone_token("east", tmp_path / "east.token")
    zone = ZoneProcess(tmp_path / "zone-east",
                       [f"grpcs://127.0.0.1:{first}", f"grpcs://127.0.0.1:{second}"],
                       token, global_cp.data_dir / "tls" / "ca.pem")
    processes.append(zone)
    zone.start()
    await eventually(lambda: zone.holds({"keep": "5s", "change": "5s"}), timeout=30,
                     interval=0.1, what="the zone in sync through the second address")
    assert f"127.0.0.1:{first} failed" in zone.log.read_text()  # it did try the first

    global_cp.kill()
    global_cp.sync_port = first  # the same global, now only at the first address
    await global_cp.start()
    answering = time.monotonic()
    await global_cp.put(timeout_policy("change", 9))
    await global_cp.put(timeout_policy("new", 7))
    await eventually(lambda: zone.holds({"keep": "5s", "change": "9s", "new": "7s"}),
                     timeout=MOVE_WITHIN, interval=0.1,
                     what="the zone in sync through the first address")
    moved = time.monotonic() - answering
    print(f"zone in sync {moved:.2f} s after the global answered on the other address")


class NamedGlobal(GlobalProcess):
    """The global with ``global.test`` in its sync certificate, its sync port on ``ip``."""

    def __init__(self, data_dir: Path, ip: str) -> None:
        super().__init__(data_dir)
        self.ip = ip

    async def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [str(Path(sys.executable).parent / "gossamer"), "global", "run",
                 "--data-dir", str(self.data_dir), "--tls-host", "global.test",
                 "--api-addr", f"127.0.0.1:{self.api_port}",
                 "--sync-addr", f"{self.ip}:{self.sync_port}",
                 "--heartbeat-interval", f"{BEAT}s", "--heartbeat-timeout", f"{DEAD_AFTER}s"],
                env=env, stdout=log, stderr=subprocess.STDOUT)
        await eventually(self._ready, timeout=20, interval=0.05, what="the global process")


def with_hosts(hosts: Path) -> list[str]:
    """Run a command in a mount namespace of its own where /etc/hosts is ``hosts``."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("SKIPPING: a private /etc/hosts needs root and unshare (util-linux)")
    return ["unshare", "--mount", "sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"',
            str(hosts)]


async def test_a_zone_follows_the_global_across_the_records_of_one_name(
        tmp_path: Path, processes: list[GlobalProcess | ZoneProcess]) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 global.test\n127.0.0.2 global.test\n")
    wrap = with_hosts(hosts)
    global_cp = NamedGlobal(tmp_path / "global", "127.0.0.1")
    processes.append(global_cp)
    await global_cp.start()
    await global_cp.put(timeout_policy("keep", 5))
    token = await global_cp.zone_token("east", tmp_path / "east.token")
    zone = ZoneProcess(tmp_path / "zone-east", [f"grpcs://global.test:{global_cp.sync_port}"],
                       token, global_cp.data_dir / "tls" / "ca.pem", wrap=wrap)
    processes.append(zone)
    zone.start()
    await eventually(lambda: zone.holds({"keep": "5s"}), timeout=30, interval=0.1,
                     what="the zone in sync with global.test")

    assert global_cp.proc is not None
    global_cp.proc.send_signal(signal.SIGKILL)
    global_cp.proc.wait()
    global_cp.ip = "127.0.0.2"  # the same global, now only at the name's other record
    await global_cp.start()
    answering = time.monotonic()
    await global_cp.put(timeout_policy("keep", 9))
    await eventually(lambda: zone.holds({"keep": "9s"}), timeout=MOVE_WITHIN, interval=0.1,
                     what="the zone in sync through the other record")
    print(f"zone in sync {time.monotonic() - answering:.2f} s after the global answered "
          f"on the name's other record")
