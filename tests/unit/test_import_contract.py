"""The import contract of ``make lint`` (``[tool.importlinter]`` in pyproject.toml) fails
the build when a layer is broken.

Each test copies the packages and pyproject.toml to a temporary directory, optionally
writes one forbidden import into the copy, and runs ``lint-imports`` there: the untouched
copy passes, each broken one fails and names the import. ``lint-imports`` puts its
working directory first on ``sys.path``, so it analyses the copy, not the checkout (the
failure messages below could not appear otherwise).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
PACKAGES = ("cli", "global_cp", "zone_cp", "zone_ingress", "zone_egress", "proxy", "sync", "dns",
            "authority", "gossamer", "deploy")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the packages the contract names, with the project's pyproject.toml."""
    copy = tmp_path / "tree"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, copy / package, ignore=ignore)
    shutil.copy2(ROOT / "pyproject.toml", copy / "pyproject.toml")
    return copy


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=tree, capture_output=True,
                          text=True, timeout=120, check=False)


def add_import(module: Path, line: str) -> None:
    """Append a module-level import to ``module`` (its position does not matter to the
    contract, which reads every import statement)."""
    module.write_text(module.read_text() + f"\n{line}\n")


def test_the_untouched_tree_keeps_every_contract(tree: Path) -> None:
    result = lint_imports(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout


def test_the_kernel_importing_a_process_breaks_the_layers(tree: Path) -> None:
    add_import(tree / "gossamer" / "settings.py", "import global_cp.app")
    result = lint_imports(tree)
    assert result.returncode != 0
    assert "gossamer is not allowed to import global_cp" in result.stdout
    assert "gossamer.settings -> global_cp.app" in result.stdout


def test_a_zone_importing_the_global_breaks_the_layers(tree: Path) -> None:
    add_import(tree / "zone_cp" / "vips.py", "from global_cp import sync_server")
    result = lint_imports(tree)
    assert result.returncode != 0
    assert "zone_cp is not allowed to import global_cp" in result.stdout


def test_asyncio_in_a_pure_core_breaks_its_contract(tree: Path) -> None:
    add_import(tree / "sync" / "engine.py", "import asyncio")
    result = lint_imports(tree)
    assert result.returncode != 0
    assert "sync.engine is not allowed to import asyncio" in result.stdout


def test_deploy_importing_the_commands_breaks_its_contract(tree: Path) -> None:
    add_import(tree / "deploy" / "local" / "demo.py", "import cli.inspect")
    result = lint_imports(tree)
    assert result.returncode != 0
    assert "deploy is not allowed to import cli" in result.stdout
