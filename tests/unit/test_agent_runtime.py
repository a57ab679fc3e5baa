"""The sidecar's lean runtime (``cli.agent_runtime``): what ``proxy run`` hands over and
how the runtime refuses to be started by hand. The hand-over itself, end to end, is
``tests/unit/test_agent_imports.py`` (the runtime's modules) and every integration test
that runs ``gossamer proxy run``."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from cli import agent_process, agent_runtime, serve
from proxy.agent.agent import AgentSettings
from proxy.agent.cp_client import ControlPlaneAddress
from proxy.agent.dataplane_file import DataplaneFile


def test_the_runtime_logs_like_the_other_commands() -> None:
    assert agent_process.LOG_FORMAT == serve.LOG_FORMAT


def test_settings_cross_the_memfd_whole(tmp_path: Path) -> None:
    settings = AgentSettings(
        cp=ControlPlaneAddress("cp.example", 5678), token="a.b.c", cp_ca_pem=b"pem",
        work_dir=tmp_path, envoy_binary=Path("/bin/true"), token_file=tmp_path / "t",
        dataplane=DataplaneFile({"type": "Dataplane", "name": "web-1", "mesh": "default"},
                                services=("web",), admin_port=9902),
        metrics_tls=(b"chain", b"key"))
    fd = os.memfd_create("test", 0)
    os.write(fd, pickle.dumps(("debug", agent_runtime.SIDECAR, settings)))
    os.lseek(fd, 0, os.SEEK_SET)
    assert agent_runtime.read_settings(fd) == ("debug", agent_runtime.SIDECAR, settings)
    with pytest.raises(OSError):  # closed once read: the token stays in the process only
        os.fstat(fd)


def test_started_by_hand_it_says_how_it_is_started() -> None:
    result = subprocess.run([sys.executable, "-m", "cli.agent_runtime"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert "started by `gossamer proxy run`" in result.stderr
    assert "Traceback" not in result.stderr
