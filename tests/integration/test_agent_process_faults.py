"""The whole agent process when things go wrong: a wrong token, an Envoy that cannot bind,
a control plane that is down, a killed agent, a silent session, and a refusal before
registration (against ``FakeZoneCp``, which speaks the agent API).
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
from pathlib import Path
from typing import Any

import pytest

from sync.v1 import agent_pb2
from tests.integration.agent_env import (
    TOKEN,
    FakeZoneCp,
    agent_files,
    agent_process,
    envoy_pids,
    free_port,
)
from tests.waiting import eventually


async def test_a_wrong_token_is_one_line_and_exit_1(tmp_path: Path,
                                                    zone_cp: FakeZoneCp) -> None:
    other = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJvdGhlciJ9.Zm9yZ2Vk"
    args = [*agent_files(tmp_path, zone_cp, token=other), "--cp", zone_cp.url,
            "--admin-port", str(free_port()), "--log-level", "error"]
    async with agent_process(tmp_path, args) as agent:
        assert await asyncio.wait_for(agent.proc.wait(), 30) == 1
        lines = agent.errors().strip().splitlines()
        assert lines == ["error: the control plane refused the dataplane's registration: "
                         "the dataplane token's signature does not verify (UNAUTHENTICATED)"]
        assert envoy_pids(agent.work) == []


async def test_an_envoy_that_cannot_bind_ends_the_agent_with_its_log(
        tmp_path: Path, zone_cp: FakeZoneCp) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        args = [*agent_files(tmp_path, zone_cp), "--cp", zone_cp.url,
                "--admin-port", str(taken.getsockname()[1]), "--log-level", "error"]
        async with agent_process(tmp_path, args) as agent:
            assert await asyncio.wait_for(agent.proc.wait(), 60) == 1
    err = agent.errors()
    assert "error: Envoy exited with code 1" in err
    assert "the last lines of Envoy's log:" in err
    assert "Address already in use" in err
    assert "Traceback" not in err


async def test_the_agent_waits_for_a_control_plane_that_is_down(
        tmp_path: Path) -> None:
    cp = FakeZoneCp(tmp_path / "cp-tls")
    port = free_port()
    args = [*agent_files(tmp_path, cp), "--cp", f"https://127.0.0.1:{port}",
            "--admin-port", str(free_port())]
    async with agent_process(tmp_path, args) as agent:
        await eventually(lambda: "UNAVAILABLE" in agent.errors(), timeout=20,
                         what="a failed attempt to be logged")
        assert agent.proc.returncode is None
        await cp.start(port)
        try:
            await eventually(lambda: cp.registrations and envoy_pids(agent.work), timeout=60,
                             what="registration and Envoy once the CP is up")
        finally:
            await cp.stop()
        agent.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(agent.proc.wait(), 15) == 0


async def test_envoy_dies_with_a_killed_agent(tmp_path: Path, zone_cp: FakeZoneCp) -> None:
    args = [*agent_files(tmp_path, zone_cp), "--cp", zone_cp.url,
            "--admin-port", str(free_port())]
    async with agent_process(tmp_path, args) as agent:
        [pid] = await eventually(lambda: envoy_pids(agent.work), timeout=30, what="Envoy")
        agent.proc.kill()
        await agent.proc.wait()
        await eventually(lambda: not envoy_pids(agent.work), timeout=10,
                         what=f"Envoy {pid} to exit with its agent")


class SilentZoneCp(FakeZoneCp):
    """Registers the agent, then says nothing ever again: a half-dead path."""

    async def Session(self, request_iterator: Any, context: Any) -> Any:
        first = await anext(aiter(request_iterator))
        doc = json.loads(first.register_dataplane_json)
        self.registrations.append(doc)
        yield agent_pb2.ControlPlaneMessage(registered=agent_pb2.Registered(
            mesh="default", name=doc["name"], zone="lab", node_id="default.backend-1"))
        await asyncio.Event().wait()


async def test_a_silent_session_is_torn_down_and_registered_again(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from proxy.agent.cp_client import AgentClient, ControlPlaneAddress
    from proxy.agent.session import Session, SessionPolicy

    cp = SilentZoneCp(tmp_path / "cp-tls")
    await cp.start()
    client = AgentClient(ControlPlaneAddress("127.0.0.1", cp.port), cp.tls.ca_file.read_bytes(),
                         TOKEN)
    session = Session(client, json.dumps({"name": "backend-1"}), on_trust_bundle=lambda _: None,
                      policy=SessionPolicy(interval=0.1, timeout=0.5, backoff_initial=0.05))
    task = asyncio.create_task(session.run())
    try:
        assert (await asyncio.wait_for(session.registered, 10)).node_id == "default.backend-1"
        await eventually(lambda: session.connects >= 2, timeout=10,
                         what="the stalled session to be replaced")
        assert any("nothing received for 0.5s" in r.getMessage() for r in caplog.records)
        assert len(cp.registrations) >= 2
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.close()
        await cp.stop()


async def test_a_refusal_before_registration_ends_the_session(tmp_path: Path) -> None:
    from proxy.agent.cp_client import AgentClient, ControlPlaneAddress
    from proxy.agent.errors import ControlPlaneRefused
    from proxy.agent.session import Session

    cp = FakeZoneCp(tmp_path / "cp-tls")
    await cp.start()
    client = AgentClient(ControlPlaneAddress("localhost", cp.port), cp.tls.ca_file.read_bytes(),
                         "wrong.token.here")
    session = Session(client, "{}", on_trust_bundle=lambda _: None)
    try:
        await asyncio.wait_for(session.run(), 10)  # returns: no retry on a refusal
        with pytest.raises(ControlPlaneRefused, match="UNAUTHENTICATED"):
            session.registered.result()
    finally:
        await client.close()
        await cp.stop()

