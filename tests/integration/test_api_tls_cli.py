"""The CLI against a global whose API listens beyond loopback, so speaks TLS.

A real ``gossamer global run --api-addr 0.0.0.0:PORT`` and the real console script: with
``--ca-file DATA_DIR/tls/ca.pem`` every command works; without it, or with an http://
address, the command fails in one line that says what to do, never with a traceback.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.waiting import ready

GOSSAMER = Path(sys.executable).parent / "gossamer"
READY_DEADLINE = 30.0
CLI_TIMEOUT = 120.0


@dataclass
class TlsGlobal:
    port: int
    data_dir: Path
    env: dict[str, str]

    @property
    def ca_file(self) -> Path:
        return self.data_dir / "tls" / "ca.pem"

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(GOSSAMER), *args], capture_output=True, text=True,
                              env=self.env, timeout=CLI_TIMEOUT, check=False)

    def add(self, name: str, address: str, *extra: str) -> None:
        added = self.cli("config", "control-planes", "add", name, "--address", address,
                         "--token-file", str(self.data_dir / "admin-token"), *extra)
        assert added.returncode == 0, added.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def tls_global(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsGlobal]:
    tmp = tmp_path_factory.mktemp("tls-cli")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOSSAMER_")}
    env["GOSSAMER_CONFIG"] = str(tmp / "config.yaml")
    cp = TlsGlobal(_free_port(), tmp / "global", env)
    log = tmp / "global.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(GOSSAMER), "global", "run", "--data-dir", str(cp.data_dir),
             "--api-addr", f"0.0.0.0:{cp.port}", "--sync-addr", f"127.0.0.1:{_free_port()}"],
            stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        ready(proc, f"https://127.0.0.1:{cp.port}", log, READY_DEADLINE, ca=cp.ca_file)
        yield cp
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        print(f"--- global log ---\n{log.read_text(errors='replace')}")


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_with_the_ca_file_the_cli_works_over_tls(tls_global: TlsGlobal) -> None:
    tls_global.add("verified", f"https://127.0.0.1:{tls_global.port}",
                   "--ca-file", str(tls_global.ca_file))
    result = tls_global.cli("--context", "verified", "get", "meshes")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1].split()[0] == "default"


def test_without_the_ca_file_the_error_names_the_fix(tls_global: TlsGlobal) -> None:
    tls_global.add("unverified", f"https://127.0.0.1:{tls_global.port}")
    line = _one_line_error(tls_global.cli("--context", "unverified", "get", "meshes"))
    assert "CERTIFICATE_VERIFY_FAILED" in line
    assert "--ca-file" in line and "tls/ca.pem" in line


def test_plain_http_to_a_tls_api_says_to_use_https(tls_global: TlsGlobal) -> None:
    tls_global.add("plain", f"http://127.0.0.1:{tls_global.port}")
    line = _one_line_error(tls_global.cli("--context", "plain", "get", "meshes"))
    assert "https://" in line


def test_a_ca_file_that_is_no_ca_is_refused_when_added(tls_global: TlsGlobal,
                                                       tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("not a certificate\n")
    result = tls_global.cli("config", "control-planes", "add", "bogus", "--address",
                            f"https://127.0.0.1:{tls_global.port}", "--ca-file", str(bogus))
    assert result.returncode == 2 and "not a PEM CA bundle" in result.stderr, result.stderr
