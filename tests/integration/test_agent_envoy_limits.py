"""The ``GOSSAMER_ENVOY_*`` overrides through a real ``gossamer proxy run``: a good one
reaches Envoy's bootstrap, a bad one ends the agent with one error line naming the
variable (exit 2, no traceback) before any Envoy starts."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.integration.agent_env import (
    FakeZoneCp,
    agent_files,
    agent_process,
    envoy_pids,
    free_port,
)
from tests.waiting import eventually


async def test_an_override_reaches_the_bootstrap(tmp_path: Path, zone_cp: FakeZoneCp,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOSSAMER_ENVOY_MAX_HEAP", "256Mi")
    monkeypatch.setenv("GOSSAMER_ENVOY_STATS", "all")
    args = [*agent_files(tmp_path, zone_cp), "--cp", zone_cp.url,
            "--admin-port", str(free_port())]
    async with agent_process(tmp_path, args) as agent:
        bootstrap = agent.work / "envoy.yaml"
        await eventually(lambda: envoy_pids(agent.work), timeout=30, what="Envoy started")
        doc = yaml.safe_load(bootstrap.read_text())
    monitors = {m["name"]: m["typed_config"] for m in doc["overload_manager"]["resource_monitors"]}
    assert monitors["envoy.resource_monitors.fixed_heap"]["max_heap_size_bytes"] == 256 << 20
    assert "stats_config" not in doc


async def test_a_bad_override_is_one_error_line_and_exit_2(tmp_path: Path, zone_cp: FakeZoneCp,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    monkeypatch.setenv("GOSSAMER_ENVOY_MAX_HEAP", "lots")
    args = [*agent_files(tmp_path, zone_cp), "--cp", zone_cp.url,
            "--admin-port", str(free_port())]
    async with agent_process(tmp_path, args) as agent:
        await eventually(lambda: agent.proc.returncode is not None, timeout=30,
                         what="the agent to exit")
        assert agent.proc.returncode == 2
        errors = agent.errors()
        assert "GOSSAMER_ENVOY_MAX_HEAP='lots': expected off or a whole number" in errors
        assert "Traceback" not in errors
        assert envoy_pids(agent.work) == []
