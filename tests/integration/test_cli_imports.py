"""What ``gossamer get meshes`` may load: the start-up budget of a client command, pinned
by the modules it imports rather than by a wall clock (tests/bench/bench_cli.py times it).

The real console script runs against the session's real global CP through a context in
its config file, prints the mesh table, and writes the modules it loaded at exit. ``get``
resolves its KIND from ``gossamer.model.kind_index`` (a plain table), so no kind's
pydantic model may load, nor the registry that would import them all; nor pydantic at all
(the config file is checked by plain records); nor a third-party HTTP client (the
standard library's ``http.client`` carries its requests); nor YAML output code, the
server side, or the other commands.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.integration.cli_env import CLI_TIMEOUT, Session

LAUNCH = """\
import atexit, os, sys
out = os.environ["CLI_MODULES_OUT"]
atexit.register(lambda: open(out, "w").write(
    "\\n".join(sorted(m for m, v in sys.modules.items() if v is not None))))
from cli.main import main
main(prog_name="gossamer")
"""

FORBIDDEN_PACKAGES = (
    "rich", "pygments", "httpx", "httpcore", "pydantic", "pydantic_core", "fastapi",
    "starlette", "uvicorn", "grpc",
    "aiosqlite", "sqlite3", "asyncpg", "cryptography", "opentelemetry", "prometheus_client",
    "google.protobuf", "global_cp", "zone_cp", "authority", "sync", "proxy", "dns",
    "gossamer.store", "gossamer.api", "gossamer.policy", "gossamer.model.registry",
    "cli.documents", "cli.resources_apply", "cli.run_global", "cli.run_zone", "cli.run_proxy",
    "cli.tokens", "cli.inspect", "cli.check",
)
# The kernel's model modules a client command may use: none of them a kind's.
ALLOWED_MODEL = {"gossamer.model", "gossamer.model.kind_index", "gossamer.model.labels"}


def forbidden(modules: set[str]) -> list[str]:
    bad = [m for m in modules if any(m == p or m.startswith(p + ".") for p in FORBIDDEN_PACKAGES)]
    bad += [m for m in modules if m.startswith("gossamer.model.") and m not in ALLOWED_MODEL]
    return sorted(bad)


def test_get_meshes_loads_no_kind_model_and_no_rich(cp: Session, tmp_path: Path) -> None:
    out = tmp_path / "modules.txt"
    result = subprocess.run([sys.executable, "-c", LAUNCH, "get", "meshes"],
                            capture_output=True, text=True, timeout=CLI_TIMEOUT, check=False,
                            env={**cp.env, "CLI_MODULES_OUT": str(out)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].split()[0] == "NAME"
    assert any(line.split()[0] == "default" for line in result.stdout.splitlines()[1:])
    modules = set(out.read_text().split())
    assert "http.client" in modules and "click" in modules  # what it does need, it loaded
    assert forbidden(modules) == []


def test_forbidden_catches_a_kind_model() -> None:
    # The check itself can fail: a kind's model or the registry is caught.
    assert forbidden({"gossamer.model.mesh", "gossamer.model.kind_index", "rich.console",
                      "http.client", "pydantic.main"}) == [
        "gossamer.model.mesh", "pydantic.main", "rich.console"]

