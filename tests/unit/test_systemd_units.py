"""The systemd units of ``deploy/systemd/``: ``systemd-analyze verify`` accepts each, and
each keeps the promises of the README's "Running in production".

``verify`` checks that ExecStart's binary exists, so the units (which name the installed
``/usr/local/bin/gossamer``) are rendered into a temporary directory with that path
replaced by this environment's ``gossamer`` console script: the file verified is the
shipped one but for that one path. Warnings (an unknown key, a value systemd cannot
parse) leave verify's exit code at 0, so any output at all counts as a failure.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

UNITS_DIR = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
INSTALLED = "/usr/local/bin/gossamer"
# The unit to verify for each file (a template is verified through an instance).
UNITS = {
    "gossamer-global.service": "gossamer-global.service",
    "gossamer-zone.service": "gossamer-zone.service",
    "gossamer-proxy@.service": "gossamer-proxy@web.service",
    "gossamer-redirect@.service": "gossamer-redirect@web.service",
    "gossamer-ingress.service": "gossamer-ingress.service",
}
# The long-running commands and their units; the redirect unit is a oneshot as root.
PROCESSES = {"gossamer-global.service": ("global", "run"),
             "gossamer-zone.service": ("zone", "run"),
             "gossamer-proxy@.service": ("proxy", "run"),
             "gossamer-ingress.service": ("ingress", "run")}
# The agents install a SIGHUP handler (reading their token file again); the control
# planes do not, so a reload would stop them.
RELOADS = {"gossamer-proxy@.service", "gossamer-ingress.service"}
ENV_EXAMPLES = {"global.env.example": "gossamer-global.service",
                "zone.env.example": "gossamer-zone.service",
                "proxy.env.example": "gossamer-proxy@.service",
                "ingress.env.example": "gossamer-ingress.service"}
NOT_FLAGS = {"GOSSAMER_ENVOY_BINARY", "GOSSAMER_REDIRECT_FLAGS"}


def gossamer_script() -> Path:
    script = Path(sys.executable).parent / "gossamer"
    assert script.exists(), f"{script}: the gossamer console script of this environment"
    return script


def verifier() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.skip("SKIPPING systemd unit checks — systemd-analyze is missing "
                    "(scripts/install-debian-packages installs `systemd`)")
    return found


def render(text: str, tmp: Path, name: str) -> Path:
    path = tmp / name
    path.write_text(text.replace(INSTALLED, str(gossamer_script())))
    return path


def verify(unit: Path, instance: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([verifier(), "verify", "--man=no", str(unit.parent / instance)],
                          capture_output=True, text=True, timeout=60, check=False)


def directives(name: str) -> dict[str, list[str]]:
    """``Key: [values]`` of a unit file (a key may repeat)."""
    found: dict[str, list[str]] = {}
    for line in (UNITS_DIR / name).read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def envvars(path: tuple[str, str]) -> set[str]:
    from cli.main import main

    ctx = click.Context(main)
    group = main.get_command(ctx, path[0])
    assert isinstance(group, click.Group)
    command = group.get_command(ctx, path[1])
    assert command is not None
    return {p.envvar for p in command.params if isinstance(p.envvar, str)}


@pytest.mark.parametrize("name", sorted(UNITS))
def test_verify_accepts_each_unit(name: str, tmp_path: Path) -> None:
    unit = render((UNITS_DIR / name).read_text(), tmp_path, name)
    result = verify(unit, UNITS[name])
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_verify_reports_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: a misspelt key is only a warning, which it catches."""
    text = (UNITS_DIR / "gossamer-global.service").read_text()
    unit = render(text.replace("NoNewPrivileges=", "NoNewPrivilege="), tmp_path,
                  "gossamer-global.service")
    result = verify(unit, "gossamer-global.service")
    assert "Unknown key 'NoNewPrivilege'" in result.stderr


@pytest.mark.parametrize("name", sorted(UNITS))
def test_each_unit_is_confined(name: str) -> None:
    found = directives(name)
    assert found["NoNewPrivileges"] == ["yes"]
    assert found["ProtectSystem"] == ["strict"]
    assert found["ProtectHome"] == ["yes"]
    caps = found["CapabilityBoundingSet"]
    assert caps == (["CAP_NET_ADMIN"] if name.startswith("gossamer-redirect") else [""])
    assert found.get("AmbientCapabilities", [""]) == [""]
    if name in PROCESSES:
        assert found["User"][0].startswith("gossamer")
        assert found["Restart"] == ["on-failure"]
        assert found["StateDirectory"][0].startswith("gossamer/")
        assert found["ExecStart"] == [f"{INSTALLED} {' '.join(PROCESSES[name])}"]
        assert ("ExecReload" in found) == (name in RELOADS)


@pytest.mark.parametrize("name", sorted(PROCESSES))
def test_units_set_only_variables_the_command_reads(name: str) -> None:
    """The directory variable each unit points at its StateDirectory is a flag's."""
    found = directives(name)
    names = {value.partition("=")[0] for value in found.get("Environment", [])}
    assert names
    assert names <= envvars(PROCESSES[name])


@pytest.mark.parametrize("example", sorted(ENV_EXAMPLES))
def test_env_examples_name_real_flags(example: str) -> None:
    names = set()
    for line in (UNITS_DIR / example).read_text().splitlines():
        line = line.lstrip("#").strip()
        if line.startswith("GOSSAMER_") and "=" in line:
            names.add(line.partition("=")[0])
    unknown = names - envvars(PROCESSES[ENV_EXAMPLES[example]]) - NOT_FLAGS
    assert not unknown, f"{example}: {sorted(unknown)} are not flags' variables"
