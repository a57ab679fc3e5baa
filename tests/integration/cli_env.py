"""The ``gossamer`` CLI against real control-plane processes: what the CLI tests share.

``gossamer global run`` (and ``gossamer zone run``) are started as subprocesses of the
installed console script (``Proc``) on free ports with a temporary ``--data-dir`` and the
SQLite store, waited for on ``/readyz`` with a deadline and terminated afterwards.
``Session`` drives the real console script as a subprocess (what an operator runs, exit
codes and stdout and stderr as a shell sees them); ``_ok`` and ``_one_line_error`` check a
result. The fixtures ``session`` and ``cp`` are in ``tests/integration/conftest.py``.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from cli.http_wire import Transport
from cli.main import main
from cli.state import Runtime
from tests.waiting import ready

GOSSAMER = Path(sys.executable).parent / "gossamer"


READY_DEADLINE = 30.0


CLI_TIMEOUT = 120.0


MESH = "kinds"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _clean_env(config: Path) -> dict[str, str]:
    """This process's environment without any GOSSAMER_* the developer may have set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOSSAMER_")}
    env["GOSSAMER_CONFIG"] = str(config)
    return env


@dataclass
class Proc:
    """One control-plane process: its command line, log file and API address."""

    args: list[str]
    log_path: Path
    api: str
    env: dict[str, str]
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen([str(GOSSAMER), *self.args], stdout=log,
                                          stderr=subprocess.STDOUT, env=self.env)
        self.wait_ready()
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_ready(self) -> None:
        assert self.popen is not None
        ready(self.popen, self.api, self.log_path, READY_DEADLINE)

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL if it does not stop in time; the exit code."""
        if self.popen is None or self.popen.poll() is not None:
            return None if self.popen is None else self.popen.returncode
        self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise


def global_proc(data_dir: Path, port: int, env: dict[str, str]) -> Proc:
    args = ["global", "run", "--data-dir", str(data_dir), "--api-addr", f"127.0.0.1:{port}",
            "--sync-addr", f"127.0.0.1:{_free_port()}", "--store", "sqlite"]
    return Proc(args, data_dir.parent / f"{data_dir.name}.log", f"http://127.0.0.1:{port}", env)


@dataclass
class Session:
    """The module's global CP and the CLI configured to talk to it."""

    proc: Proc
    tmp: Path
    env: dict[str, str]

    @property
    def token_file(self) -> Path:
        return self.tmp / "global" / "admin-token"

    def run(self, *args: str, input: str | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """The real console script, as a shell would run it."""
        return subprocess.run([str(GOSSAMER), *args], input=input, capture_output=True,
                              text=True, env=env or self.env, timeout=CLI_TIMEOUT, check=False)

    def cli(self, *args: str, transport: Transport | None = None) -> Result:
        """The same command in-process (click's CliRunner), over real HTTP."""
        runtime = Runtime(transport=transport, env=self.env)
        return CliRunner().invoke(main, list(args), obj=runtime)

    def write(self, name: str, text: str) -> Path:
        path = self.tmp / name
        path.write_text(text)
        return path


def _ok(result: subprocess.CompletedProcess[str] | Result) -> str:
    code = result.returncode if isinstance(result, subprocess.CompletedProcess) else (
        result.exit_code)
    assert code == 0, f"exit {code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return str(result.stdout)


def _one_line_error(result: subprocess.CompletedProcess[str] | Result, code: int) -> str:
    actual = result.returncode if isinstance(result, subprocess.CompletedProcess) else (
        result.exit_code)
    assert actual == code, f"exit {actual}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def _jwt_claims(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    parts = token.split(".")
    assert len(parts) == 3 and all(parts), token

    def decode(part: str) -> dict[str, Any]:
        return dict(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))))

    return decode(parts[0]), decode(parts[1])

