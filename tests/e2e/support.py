"""What the e2e modules share: one running ``deploy.local`` environment per module, and
what the tests observe it with (waiting on a condition is ``tests.waiting.eventually_sync``).

``running(topology, state)`` is the body of each module's ``env`` fixture: it checks the
machine (root and network namespaces: only a kernel without netns skips, loudly; a
missing tool or no root fails, since CI runs ``make test`` as root and installs them),
brings the environment up, and always takes it down. Each module's names start with
``prefix(letter)``, which holds this test process's pid: two runs on one machine never
touch each other's environments, and what a killed run left is removed by the next
(``reap_orphans``: its pid is gone). ``zones_of`` makes real calls and says which zone
answered.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from deploy.local import netns, network, probes, processes
from deploy.local.environment import Environment
from deploy.local.errors import LocalEnvError, Unsupported
from deploy.local.launch import Options
from deploy.local.topology import Topology

T = TypeVar("T")
TOOLS = ("ip", "curl", "dig", "tcpdump")
# Short heartbeats: a zone notices a dead global (and reconnects) in seconds, not 15 s.
OPTIONS = Options(heartbeat_interval="1s", heartbeat_timeout="3s")


_OURS = re.compile(r"^g(\d+)[a-z]-")


def prefix(letter: str) -> str:
    """``g<pid><letter>-``: this test process's names for one module's environment."""
    return f"g{os.getpid()}{letter}-"


def reap_orphans() -> None:
    """Remove the environments of e2e runs whose test process is gone."""
    for ns in netns.namespaces("g"):
        match = _OURS.match(ns)
        if match and not processes.alive(int(match.group(1))):
            dead = match.group(0)
            processes.kill_all(dead, None, netns.namespaces(dead))
            network.clean(dead)


def check_machine() -> None:
    if os.geteuid() != 0:
        pytest.fail("the e2e tests build network namespaces and need root (CI runs "
                    "`make test` as root)")
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"the e2e tests need {', '.join(missing)}: run "
                    f"./scripts/install-debian-packages as root")


def running(topology: Topology, state: Path, options: Options = OPTIONS
            ) -> Iterator[Environment]:
    check_machine()
    reap_orphans()
    env = Environment(topology, state, options)
    try:
        env.up()
    except Unsupported as exc:
        env.down()
        pytest.skip(f"SKIPPING E2E TESTS — this kernel cannot run them: {exc}")
    except LocalEnvError as exc:
        env.down()
        pytest.fail(f"the environment did not come up: {exc}")
    try:
        yield env
    finally:
        env.down()


def zones_of(env: Environment, client: str, service: str, n: int = 10) -> list[str | None]:
    """The zone that answered each of ``n`` calls (None for a call that failed)."""
    return [probes.call(env, client, f"http://{service}.mesh/").zone for _ in range(n)]


def all_from(env: Environment, client: str, service: str, zone: str, n: int = 10) -> bool:
    return zones_of(env, client, service, n) == [zone] * n


def status_of(env: Environment, client: str, service: str) -> int:
    return probes.call(env, client, f"http://{service}.mesh/").status


def count(env: Environment, process: str, text: str) -> int:
    """How many lines of ``process``'s log contain ``text``."""
    log = env.supervisor.get(process).log
    return sum(text in line for line in log.read_text(errors="replace").splitlines())


def deny(source: str, target: str, action: str = "Deny") -> str:
    """A MeshTrafficPermission: ``source`` → ``target`` gets ``action``."""
    return f"""\
type: MeshTrafficPermission
name: {source}-to-{target}
mesh: default
spec:
  targetRef: {{kind: MeshService, name: {target}}}
  from:
  - targetRef: {{kind: MeshService, name: {source}}}
    default: {{action: {action}}}
"""
