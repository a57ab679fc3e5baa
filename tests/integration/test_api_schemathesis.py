"""schemathesis against the live APIs: what ``/openapi.json`` promises is what they do.

A real ``gossamer global run`` (and a standalone ``gossamer zone run``) on a temporary
data dir, and schemathesis's CLI in a subprocess with the admin token: every operation
gets generated valid and invalid requests, and the run fails on any 5xx, any answer
whose status, content type, headers or body the document does not describe, any
schema-invalid request accepted, and any request accepted without the token.

One check is left out, on purpose: ``positive_data_acceptance``. Resource documents
are typed ``object`` in the OpenAPI (one generic route per kind, validated by the kind's
model), so most random objects are rightly refused with a 400 naming the field.

The runs are bounded to finish in about a minute together on two cores: examples per
operation, the fuzzing and stateful phases (the coverage phase alone sends some 3,000
requests, two minutes), and the zone, whose routes are mostly the global's, lighter
still. ``SCHEMATHESIS_EXAMPLES`` and ``SCHEMATHESIS_PHASES`` widen a run by hand. One
worker: schemathesis's threads trip a CPython 3.11 AST bug ("recursion depth mismatch").
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.waiting import ready

BIN = Path(sys.executable).parent
READY_DEADLINE = 30.0
RUN_DEADLINE = 240.0
# (examples per operation, phases) for each kind of control plane.
BUDGET = {"global": (os.environ.get("SCHEMATHESIS_EXAMPLES", "5"),
                     os.environ.get("SCHEMATHESIS_PHASES", "examples,fuzzing,stateful")),
          "zone": (os.environ.get("SCHEMATHESIS_EXAMPLES", "2"),
                   os.environ.get("SCHEMATHESIS_PHASES", "fuzzing"))}
EXCLUDED_CHECKS = "positive_data_acceptance"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("GOSSAMER_")}


@pytest.fixture
def control_plane(tmp_path: Path,
                  request: pytest.FixtureRequest) -> Iterator[tuple[str, str, Path]]:
    """``(kind, api URL, data dir)`` of a running control plane of the kind asked for."""
    port, data_dir = _free_port(), tmp_path / "cp"
    args = {"global": ["global", "run", "--sync-addr", f"127.0.0.1:{_free_port()}"],
            "zone": ["zone", "run", "--zone", "lab", "--xds-addr",
                     f"127.0.0.1:{_free_port()}"]}[request.param]
    log = tmp_path / "cp.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(BIN / "gossamer"), *args, "--data-dir", str(data_dir),
                                 "--api-addr", f"127.0.0.1:{port}", "--log-level", "warning"],
                                stdout=out, stderr=subprocess.STDOUT, env=_env())
    api = f"http://127.0.0.1:{port}"
    try:
        ready(proc, api, log, READY_DEADLINE)
        yield request.param, api, data_dir
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        print(f"--- control plane log ---\n{log.read_text(errors='replace')}")


@pytest.mark.parametrize("control_plane", ["global", "zone"], indirect=True)
def test_every_operation_keeps_to_the_openapi_document(control_plane: tuple[str, str, Path],
                                                       tmp_path: Path) -> None:
    kind, api, data_dir = control_plane
    token = (data_dir / "admin-token").read_text().strip()
    examples, phases = BUDGET[kind]
    result = subprocess.run(
        [str(BIN / "schemathesis"), "run", f"{api}/openapi.json",
         "--header", f"Authorization: Bearer {token}",
         "--checks", "all", "--exclude-checks", EXCLUDED_CHECKS,
         "--max-examples", examples, "--seed", "1", "--workers", "1",
         "--phases", phases, "--suppress-health-check", "all",
         "--request-timeout", "10", "--no-color"],
        capture_output=True, text=True, timeout=RUN_DEADLINE, check=False, cwd=tmp_path,
        env={**_env(), "SCHEMATHESIS_HOOKS": ""})
    assert result.returncode == 0, f"schemathesis found problems:\n{result.stdout}\n{result.stderr}"
    assert " passed" in result.stdout and "Tested:" in result.stdout, result.stdout
