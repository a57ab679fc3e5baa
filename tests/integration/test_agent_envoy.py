"""The agent's Envoy supervision against a real Envoy: the golden bootstraps as Envoy
validates them, restarts of a killed Envoy, hot restarts (and their fallback), an admin port
Envoy cannot bind, and a bounded drain on stop.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.agent.envoy_process import SupervisionPolicy
from proxy.agent.errors import EnvoyCannotStart
from proxy.agent.sds_server import SecretServer
from proxy.agent.sds_state import secret_entries
from tests.integration.agent_env import (
    ENVOY,
    Pki,
    envoy_command,
    envoy_pids,
    free_port,
    handshake,
    supervised,
    tls_listener_bootstrap,
)
from tests.waiting import eventually

GOLDEN = Path(__file__).parent.parent / "unit" / "golden" / "agent"


async def admin_ready(port: int) -> bool:
    async with httpx.AsyncClient(timeout=1.0) as client:
        return (await client.get(f"http://127.0.0.1:{port}/ready")).status_code == 200


@pytest.mark.parametrize("name", ["bootstrap-ip.yaml", "bootstrap-dns.yaml"])
def test_envoy_accepts_the_golden_bootstraps(name: str) -> None:
    result = subprocess.run([str(ENVOY), "--mode", "validate", "--use-dynamic-base-id",
                             "--config-path", str(GOLDEN / name)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "OK" in result.stdout + result.stderr


def admin_only_bootstrap(admin_port: int) -> dict[str, Any]:
    return {"node": {"id": "supervised", "cluster": "test"},
            "admin": {"address": {"socket_address": {"address": "127.0.0.1",
                                                     "port_value": admin_port}}}}


async def test_a_killed_envoy_is_restarted(tmp_path: Path) -> None:
    admin = free_port()
    policy = SupervisionPolicy(startup_window=0.3, restart_initial=0.05)
    command = envoy_command(tmp_path, admin_only_bootstrap(admin))
    loop = asyncio.get_running_loop()
    async with supervised(command, admin, policy) as (envoy, task):
        await eventually(lambda: admin_ready(admin), timeout=20, what="Envoy's admin")
        await eventually(lambda: loop.time() - (envoy.started_at or loop.time()) > 0.3,
                         what="the startup window to pass")
        first = envoy.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        await eventually(lambda: envoy.pid not in (None, first), timeout=10,
                         what="a new Envoy")
        await eventually(lambda: admin_ready(admin), timeout=20, what="the new Envoy's admin")
        assert envoy.starts == 2 and not task.done()
        log = command.log_file.read_text()
        assert log.count("--- gossamer:") == 2


async def test_a_hot_restart_replaces_envoy_and_its_parent_exits(tmp_path: Path) -> None:
    """The next epoch joins the running Envoy's base id and takes its admin port over;
    the parent exits after its drain, and the supervisor follows the new process."""
    admin = free_port()
    command = envoy_command(tmp_path, admin_only_bootstrap(admin), drain_time=1)
    async with supervised(command, admin) as (envoy, task):
        await eventually(lambda: admin_ready(admin), timeout=20, what="Envoy's admin")
        first = envoy.pid
        assert first is not None and await envoy.hot_restart()
        assert envoy.pid not in (None, first) and envoy.epoch == 1
        await eventually(lambda: first not in envoy_pids(tmp_path), timeout=15,
                         what="the parent to exit after its drain")
        assert await admin_ready(admin) and envoy.epoch == 1 and not task.done()
        assert envoy_pids(tmp_path) == [envoy.pid]
        assert "--restart-epoch 1" in command.log_file.read_text()


async def test_a_failed_hot_restart_falls_back_to_a_plain_restart(tmp_path: Path) -> None:
    """A new epoch that cannot join its parent (here: a base id nobody holds) dies while
    the parent runs; the parent, still on the old bootstrap, is stopped and Envoy started
    again at epoch 0."""
    admin = free_port()
    policy = SupervisionPolicy(restart_initial=0.05)
    command = envoy_command(tmp_path, admin_only_bootstrap(admin), drain_time=1)
    async with supervised(command, admin, policy) as (envoy, task):
        await eventually(lambda: admin_ready(admin), timeout=20, what="Envoy's admin")
        first = envoy.pid
        command.base_id_file.write_text(str(int(command.base_id_file.read_text()) + 7))
        assert await envoy.hot_restart()
        await eventually(lambda: envoy.epoch == 0 and envoy.pid not in (None, first)
                         and envoy.starts == 3, timeout=20, what="a plain restart")
        await eventually(lambda: admin_ready(admin), timeout=20, what="the new Envoy's admin")
        assert first not in envoy_pids(tmp_path) and not task.done()


async def test_an_envoy_that_cannot_bind_its_admin_port_fails_with_its_log(
        tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        admin = taken.getsockname()[1]
        command = envoy_command(tmp_path, admin_only_bootstrap(admin))
        async with supervised(command, admin) as (_, task):
            with pytest.raises(EnvoyCannotStart) as info:
                await asyncio.wait_for(task, 30)
    assert "after it started" in info.value.detail
    assert any("Address already in use" in line or "cannot bind" in line
               for line in info.value.log_tail), info.value.log_tail


async def test_stop_drains_and_is_bounded(tmp_path: Path, sds: SecretServer) -> None:
    mesh = Pki()
    pair = mesh.workload()
    sds.update(secret_entries(pair.cert_pem(), pair.key_pem(), mesh.ca.cert_pem()))
    admin, port = free_port(), free_port()
    assert sds.path is not None
    command = envoy_command(tmp_path / "envoy",
                            tls_listener_bootstrap(admin, port, sds.path, "GRPC"),
                            drain_time=2.0)
    loop = asyncio.get_running_loop()
    async with supervised(command, admin) as (envoy, task):
        await eventually(lambda: asyncio.to_thread(
            handshake, port, mesh.ca.cert_pem(), mesh.workload(), tmp_path), timeout=20,
            what="Envoy serving")
        pid = envoy.pid
        # an idle Envoy stops at once: nothing to drain
        started = loop.time()
        await envoy.stop()
        assert loop.time() - started < 2.0
        await asyncio.wait_for(task, 5)  # the supervisor does not restart it
        assert pid is not None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)

