"""A zone given several ``--global`` addresses follows the global to whichever answers,
all real processes (``gossamer global run``, ``gossamer zone run``) over real gRPC and
TLS: two global replicas need leader election, so one global stands for them, reachable
at one of the two addresses at a time.

- The first address refuses connections: the zone connects through the second.
- The global is killed and started again on the first address (the second now refuses):
  the zone's broken stream moves there within seconds and receives what changed.
"""

from __future__ import annotations

import os
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

    def __init__(self, data_dir: Path, urls: list[str], token: Path, ca: Path) -> None:
        self.data_dir = data_dir
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
            self.proc = subprocess.Popen([str(Path(sys.executable).parent / "gossamer"),
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
