"""``pip install`` of the built wheel in a fresh virtual environment gives a working
``gossamer``: the packaging ships everything the commands load at run time (the store's
migrations, the sync's .proto files and stubs), not only what an editable install finds
in the checkout.

The wheel is built from a copy of the sources (so the checkout gets no ``build/``), with
``pip wheel --no-deps``; its dependencies come from the package registry, as for a user.
The environment is module-wide: building and installing it takes about half a minute.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import venv
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.cli_env import _free_port
from tests.waiting import eventually_sync

ROOT = Path(__file__).resolve().parents[2]
PIP_TIMEOUT = 600


def _sources(into: Path) -> Path:
    """pyproject.toml, README.md and the packages it lists, copied to ``into``."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = project["tool"]["setuptools"]["packages"]["find"]["include"]
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, into / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for pattern in patterns:
        package = pattern.rstrip("*")
        shutil.copytree(ROOT / package, into / package, ignore=ignore)
    return into


def _pip(python: Path, *args: str) -> None:
    result = subprocess.run([str(python), "-m", "pip", "--disable-pip-version-check", *args],
                            capture_output=True, text=True, timeout=PIP_TIMEOUT, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The ``gossamer`` console script of a fresh environment holding only the wheel and
    its dependencies."""
    tmp = tmp_path_factory.mktemp("packaging")
    src = _sources(tmp_path_factory.mktemp("src"))
    wheels = tmp / "wheels"
    _pip(Path(sys.executable), "wheel", "-q", "--no-deps",
         str(src), "-w", str(wheels))
    (wheel,) = wheels.glob("gossamer-*.whl")
    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    _pip(env_dir / "bin" / "python", "install", "-q", str(wheel))
    yield env_dir / "bin" / "gossamer"


def _clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GOSSAMER_", "OTEL_", "PYTHON", "VIRTUAL_ENV"))}
    return {**env, **(extra or {})}


def _serve_global(gossamer: Path, tmp: Path,
                  env: dict[str, str]) -> subprocess.CompletedProcess[str] | None:
    """Run ``global run`` on SQLite in ``tmp`` until /healthz answers 200, then stop it;
    None when it served, else the finished process (it exited by itself)."""
    port = _free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    log = tmp / "global.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [str(gossamer), "global", "run", "--data-dir", str(tmp / "global"),
             "--store", "sqlite", "--api-addr", f"127.0.0.1:{port}",
             "--sync-addr", f"127.0.0.1:{_free_port()}"],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp)

    def healthy() -> bool:
        if proc.poll() is not None:
            return True
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        eventually_sync(healthy, 60, "the installed global's /healthz")
        if proc.poll() is not None:
            return subprocess.CompletedProcess(proc.args, proc.returncode, log.read_text(), "")
        assert (tmp / "global" / "store.db").exists()
        return None
    finally:
        if proc.poll() is None:
            proc.terminate()
            assert proc.wait(timeout=30) == 0, log.read_text()


def test_installed_gossamer_reports_its_version(installed: Path) -> None:
    result = subprocess.run([str(installed), "version"], capture_output=True, text=True,
                            env=_clean_env(), timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("gossamer ")


def test_installed_global_serves_on_sqlite(installed: Path, tmp_path: Path) -> None:
    exited = _serve_global(installed, tmp_path, _clean_env())
    assert exited is None, f"exited with {exited.returncode}:\n{exited.stdout}"


def test_installed_global_with_otlp_export_serves_or_names_the_fix(
        installed: Path, tmp_path: Path) -> None:
    """pip writes xds-protos' old copy of opentelemetry/proto and opentelemetry-proto's
    in no fixed order: when the old one won, the exporter's import fails, and the global
    says so in one line with the command that fixes it; after that command it serves."""
    env = _clean_env({"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{_free_port()}"})
    exited = _serve_global(installed, tmp_path / "first", env)
    if exited is None:
        return  # opentelemetry-proto was written last: nothing to fix
    output = exited.stdout
    assert exited.returncode == 1 and "Traceback" not in output, output
    (line,) = [x for x in output.splitlines() if x.startswith("error:")]
    assert "pip install --force-reinstall --no-deps opentelemetry-proto==" in line
    fix = line.split("`")[1].split()
    _pip(installed.parent / "python", *fix[1:])
    again = _serve_global(installed, tmp_path / "fixed", env)
    assert again is None, f"still exits after `{' '.join(fix)}`:\n{again.stdout}"
