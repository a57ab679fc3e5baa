"""What runs, and how to reach into it: ``report`` (any environment, by prefix) and
``describe`` (the commands to call into a running one and to stop it)."""

from __future__ import annotations

import contextlib
import json
import shlex
import sys
from pathlib import Path

from deploy.local import netns, processes
from deploy.local.environment import Environment
from deploy.local.launch import GOSSAMER
from deploy.local.topology import GLOBAL_API_PORT, ZONE_API_PORT


def report(prefix: str, state: Path) -> str:
    """Namespaces and processes of the environment with ``prefix``."""
    spaces = netns.namespaces(prefix)
    lines = [f"environment {prefix!r} (state in {state})"]
    if not spaces:
        lines.append("  no namespaces: it is not running")
    for ns in spaces:
        lines.append(f"  namespace {ns}: {len(netns.pids_in(ns))} processes")
    pid_dir = state / "pids"
    for pidfile in sorted(pid_dir.glob("*.pid")) if pid_dir.is_dir() else []:
        pid = None
        with contextlib.suppress(OSError, ValueError):
            pid = int(pidfile.read_text())
        up = pid is not None and processes.alive(pid)
        lines.append(f"  process {pidfile.stem:<22} pid {pid}: {'running' if up else 'gone'}")
    strays = set(processes.marked(prefix))
    if strays and not spaces:
        lines.append(f"  stray processes with the environment's mark: {sorted(strays)}")
    with contextlib.suppress(OSError, ValueError):
        recorded = json.loads((state / "environment.json").read_text())
        lines.append(f"  zones {recorded['zones']}, workloads "
                     f"{[w['name'] for w in recorded['workloads']]}")
    return "\n".join(lines)


def cli_prefix(env: Environment, zone: str | None = None) -> str:
    """A shell prefix that runs the ``gossamer`` CLI against the global or a zone CP."""
    t = env.topology
    ns, data, port = ((t.cp_ns(zone), env.layout.cp_dir(zone), ZONE_API_PORT) if zone
                      else (t.global_ns, env.layout.global_dir, GLOBAL_API_PORT))
    return (f"ip netns exec {ns} env GOSSAMER_ADDRESS=http://127.0.0.1:{port} "
            f"GOSSAMER_TOKEN_FILE={shlex.quote(str(data / 'admin-token'))} {GOSSAMER}")


def describe(env: Environment) -> str:
    t = env.topology
    client = next((w for w in t.workloads if w.service != "backend"), t.workloads[0])
    ns = t.workload_ns(client.name)
    stop = f"{sys.executable} -m deploy.local down --prefix {t.prefix}"
    if env.state.name != f"gossamer-local-{t.prefix.rstrip('-')}":
        stop += f" --state-dir {shlex.quote(str(env.state))}"
    return "\n".join([
        "Call into it (as root):",
        f"  ip netns exec {ns} curl http://backend.mesh/",
        f"  ip netns exec {ns} dig +short backend.mesh",
        f"  {cli_prefix(env)} inspect zones",
        f"  {cli_prefix(env, client.zone)} inspect dataplanes",
        f"Logs: {env.state / 'logs'}",
        f"Stop it: {stop}",
    ])
