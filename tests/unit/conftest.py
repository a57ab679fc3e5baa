"""Fixtures shared by unit test modules.

The CLI tests' ``fake`` control plane (``tests/unit/cli_fake_cp.py``), the ``token_file``
and ``env`` the CLI reads, and ``cli``, which invokes the ``gossamer`` command in this
process against the fake.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cli.main import main
from cli.state import Runtime
from tests.unit.cli_fake_cp import NOW, TOKEN, FakeControlPlane, HandlerTransport, Invoke


@pytest.fixture
def fake() -> FakeControlPlane:
    return FakeControlPlane()


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "admin-token"
    path.write_text(TOKEN + "\n")
    return path


@pytest.fixture
def env(tmp_path: Path, token_file: Path) -> dict[str, str]:
    return {"GOSSAMER_CONFIG": str(tmp_path / "cfg" / "config.yaml"),
            "GOSSAMER_ADDRESS": "http://cp.test:5681",
            "GOSSAMER_TOKEN_FILE": str(token_file)}


@pytest.fixture
def cli(fake: FakeControlPlane, env: dict[str, str]) -> Invoke:
    def invoke(*args: str, input: str | bytes | None = None,
               environ: dict[str, str] | None = None) -> Result:
        runtime = Runtime(transport=HandlerTransport(fake), clock=lambda: NOW,
                          env=env if environ is None else environ)
        return CliRunner().invoke(main, list(args), obj=runtime, input=input)
    return invoke

