"""A multi-zone Gossamer on one Linux host: ``Environment(topology, state).up()`` / ``down()``.

``up`` cleans whatever an earlier run with the same prefix left, builds the network
(``network.build``), then starts, each step once the one before is ready: the upstream
DNS and the global CP (embedded SQLite) in the global's namespace; the tokens (at the
global: per zone one with the ``cp`` and one with the ``ingress`` scope, per workload a
dataplane token); every zone CP, federated with the global; then every zone ingress
(advertising its address on the zone network) and every workload (its app, then
``gossamer proxy redirect install`` in its namespace and its sidecar with
``--transparent``, as the README's "Calling services by name" does on a host). The command
lines are ``launch``'s; every process is a real ``gossamer`` (or
``python -m deploy.local.*``) started by ``processes.Supervisor``.

``down`` needs only the prefix and the state directory, so ``python -m deploy.local
down`` cleans up after a crashed run too. Tests drive faults through ``stop``/``kill``/
``start`` of named processes and look in with ``probes``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

from deploy.local import launch, netns, network, processes
from deploy.local.errors import LocalEnvError, NotReady
from deploy.local.launch import GOSSAMER, Command, Layout, Options
from deploy.local.processes import Supervisor
from deploy.local.tokens import token_requests
from deploy.local.topology import (
    GLOBAL_API_PORT,
    GLOBAL_IP,
    INGRESS_PORT,
    WAN,
    ZONE_API_PORT,
    Topology,
    Workload,
)
from proxy.redirect.defaults import SIDECAR_USER

__all__ = ["Environment", "Options", "default_state"]
T = TypeVar("T")
RECORD = "environment.json"


def wait_until(check: Callable[[], T | None], timeout: float, what: str,
               explain: Callable[[], str] = lambda: "") -> T:
    """``check()``'s first truthy result, or ``NotReady`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            detail = explain()
            raise NotReady(f"{what}: not after {timeout:.0f}s" + (f"\n{detail}" if detail else ""))
        time.sleep(0.2)  # a poll interval; the bound is the deadline


def default_state(prefix: str) -> Path:
    """Where an environment keeps its data, logs and pid files unless told otherwise."""
    return Path("/tmp") / f"gossamer-local-{prefix.rstrip('-')}"


def clean_env(state: Path) -> dict[str, str]:
    """This process's environment without the operator's GOSSAMER_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOSSAMER_")}
    env["GOSSAMER_CONFIG"] = str(state / "cli-config.yaml")
    return env


class Environment:
    def __init__(self, topology: Topology, state: Path, options: Options | None = None) -> None:
        self.topology = topology
        self.state = state.resolve()
        self.layout = Layout(self.state, launch.sidecars_dir(topology.prefix))
        self.options = options or Options()
        self.env = clean_env(self.state)
        self.supervisor = Supervisor(self.state, topology.prefix, self.env)
        self.commands: dict[str, Command] = {}

    # -- the whole environment --------------------------------------------------------------

    def up(self, progress: Callable[[str], None] = lambda _: None) -> None:
        """Build and start everything (after cleaning up this prefix); ``progress`` gets one
        line per step."""
        t, layout, o = self.topology, self.layout, self.options
        netns.check_support(f"{t.prefix}probe")
        self.down()
        self._fresh_state()
        network.build(t)
        progress(f"network: WAN {WAN}, " + ", ".join(f"zone {z} {t.subnet(z)}" for z in t.zones)
                 + f", {len(t.namespaces())} namespaces")
        self._start_all(launch.global_commands(t, layout, o))
        progress(f"global control plane on {GLOBAL_IP} (SQLite), upstream DNS beside it")
        self._issue_tokens()
        for zone in t.zones:
            self._zone_tls(zone)
        self._start_all([launch.zone_command(t, layout, o, z) for z in t.zones])
        progress(f"zone control planes on {', '.join(t.cp_ip(z) for z in t.zones)}, federated")
        commands = [launch.ingress_command(t, layout, o, z) for z in t.zones]
        commands += [launch.egress_command(t, layout, o, z) for z in t.egresses]
        for w in t.workloads:
            self._prepare_workload(w)
            commands += launch.workload_commands(t, layout, o, w)
        self._start_all(commands)
        for zone in t.zones:
            progress(f"zone {zone}: ingress on {t.ingress_ip(zone)}:{INGRESS_PORT}; "
                     + ", ".join(f"{w.name} ({w.service}) on {t.workload_ip(w.name)}"
                                 for w in t.in_zone(zone)) + " with sidecars")

    def down(self) -> list[str]:
        """Stop every process and remove every namespace of this prefix; what was removed."""
        prefix = self.topology.prefix
        pids = processes.kill_all(prefix, self.state, netns.namespaces(prefix))
        removed = [f"{len(pids)} processes"] if pids else []
        return removed + network.clean(prefix)

    def _prepare_workload(self, w: Workload) -> None:
        """What a user does on the workload's host before its sidecar starts: the
        Dataplane file, the zone CP's CA, ``gossamer proxy redirect install`` in its
        namespace (which makes the ``gossamer`` user), and the token handed to that user."""
        t, layout = self.topology, self.layout
        dataplane = launch.dataplane_yaml(t, w, self.options)
        (layout.workload_dir(w.name) / "dataplane.yaml").write_text(dataplane)
        shutil.copyfile(layout.cp_ca(w.zone), layout.sidecar_ca(w.name))
        netns.run(netns.exec_argv(t.workload_ns(w.name), launch.redirect_argv()),
                  env=self.env, timeout=60)
        shutil.chown(layout.dataplane_token(w.name), user=SIDECAR_USER)

    def _fresh_state(self) -> None:
        """An empty state directory: a rerun starts from scratch, not on old stores."""
        if self.state.exists() and any(self.state.iterdir()):
            if not (self.state / RECORD).exists():
                raise LocalEnvError(f"{self.state} is not empty and not an environment's "
                                    f"state directory; choose another")
            shutil.rmtree(self.state)
        (self.state / "tokens").mkdir(parents=True)
        sidecars = self.layout.sidecars
        if sidecars is not None:
            shutil.rmtree(sidecars, ignore_errors=True)
            sidecars.mkdir(mode=0o755)
        for w in self.topology.workloads:
            self.layout.workload_dir(w.name).mkdir(mode=0o755)
        self.supervisor = Supervisor(self.state, self.topology.prefix, self.env)
        t = self.topology
        (self.state / RECORD).write_text(json.dumps({
            "prefix": t.prefix, "zones": list(t.zones),
            "workloads": [asdict(w) for w in t.workloads]}, indent=2))

    def run_in(self, ns: str, argv: Sequence[str], *, timeout: float = 30.0,
               check: bool = True) -> str:
        """``argv`` inside namespace ``ns``; its stdout."""
        return netns.run_in(ns, argv, timeout=timeout, check=check, env=self.env).stdout

    # -- the CLI against the control planes -------------------------------------------------

    def gossamer(self, *args: str, zone: str | None = None, check: bool = True,
                 stdin: str | None = None) -> str:
        """The real ``gossamer`` CLI against the global (or ``zone``'s CP), in its namespace;
        its stdout."""
        t = self.topology
        ns, data, port = ((t.cp_ns(zone), self.layout.cp_dir(zone), ZONE_API_PORT) if zone
                          else (t.global_ns, self.layout.global_dir, GLOBAL_API_PORT))
        env = {**self.env, "GOSSAMER_ADDRESS": f"http://127.0.0.1:{port}",
               "GOSSAMER_TOKEN_FILE": str(data / "admin-token")}
        argv = netns.exec_argv(ns, [GOSSAMER, *args])
        return netns.run(argv, env=env, check=check, timeout=60, stdin=stdin).stdout

    def api_get(self, path: str, zone: str | None = None) -> Any:
        """``GET path`` on the global's (or ``zone``'s CP's) HTTP API with its admin token,
        parsed: cheaper than a CLI start when a test polls."""
        t = self.topology
        ns, data, port = ((t.cp_ns(zone), self.layout.cp_dir(zone), ZONE_API_PORT) if zone
                          else (t.global_ns, self.layout.global_dir, GLOBAL_API_PORT))
        token = (data / "admin-token").read_text().strip()
        out = self.run_in(ns, ["curl", "-sSf", "-m", "5", "-H", f"authorization: Bearer {token}",
                               f"http://127.0.0.1:{port}{path}"])
        return json.loads(out)

    def apply(self, yaml_text: str, zone: str | None = None) -> str:
        return self.gossamer("apply", "-f", "-", zone=zone, stdin=yaml_text)

    def _issue_tokens(self) -> None:
        """Per zone a ``cp`` and an ``ingress`` token, per workload a dataplane token: all at
        the global (a federated zone verifies dataplane tokens with the signing keys the
        global syncs to it), from one process (``deploy.local.tokens``)."""
        t, layout = self.topology, self.layout
        requests = token_requests(list(t.zones), [(w.name, w.service) for w in t.workloads],
                                  layout.zone_token, layout.dataplane_token,
                                  list(t.egresses))
        argv = [sys.executable, "-m", "deploy.local.tokens",
                "--api", f"http://127.0.0.1:{GLOBAL_API_PORT}",
                "--admin-token-file", str(layout.global_dir / "admin-token")]
        netns.run(netns.exec_argv(t.global_ns, argv), env=self.env, timeout=60,
                  stdin=json.dumps(requests))

    # -- processes --------------------------------------------------------------------------

    def _start(self, command: Command) -> None:
        self.commands[command.name] = command
        self.supervisor.start(command.name, command.ns, command.argv)
        if command.envoy_log is not None:
            # Every log in one directory: Envoy's too (the agent writes it in its work dir).
            link = self.state / "logs" / f"{command.name}.envoy.log"
            if not link.is_symlink():
                link.symlink_to(command.envoy_log)

    def _start_all(self, commands: list[Command]) -> None:
        """Start them all, then wait until each is ready."""
        for command in commands:
            self._start(command)
        for command in commands:
            self.wait_ready(command.name)

    def _zone_tls(self, zone: str) -> None:
        """The zone CP names its serving certificate after localhost and the host; sidecars
        in other namespaces dial its address, so that goes in before it first starts (a CP
        keeps a certificate that has the names it wants)."""
        from gossamer.pki.serving import ensure_serving_tls

        ensure_serving_tls(self.layout.cp_dir(zone) / "tls", f"gossamer-zone-{zone}",
                           [self.topology.cp_ip(zone)])

    def names(self) -> list[str]:
        return sorted(self.commands)

    def stop(self, name: str) -> None:
        """SIGTERM (then SIGKILL), its children too."""
        self.supervisor.stop(name)

    def kill(self, name: str) -> None:
        """SIGKILL, as a crash would."""
        self.supervisor.kill(name)

    def start(self, name: str, wait: bool = True) -> None:
        """Start a stopped process again, with the same command line."""
        self._start(self.commands[name])
        if wait:
            self.wait_ready(name)

    def running(self, name: str) -> bool:
        return self.supervisor.get(name).running()

    def log(self, name: str, lines: int = 40) -> str:
        return self.supervisor.get(name).log_tail(lines)

    def kill_workload(self, name: str) -> None:
        """Kill the app and its sidecar (Envoy dies with its agent), as a crash would."""
        for suffix in ("sidecar", "app"):
            self.kill(f"{name}-{suffix}")

    def start_workload(self, name: str) -> None:
        for suffix in ("app", "sidecar"):
            self.start(f"{name}-{suffix}")

    # -- readiness --------------------------------------------------------------------------

    def wait_ready(self, name: str) -> None:
        """Until ``name`` answers on its ready URL (a CP's ``/readyz``, an Envoy's
        ``/ready``, the app), or ``NotReady`` with its log when it exits or the time is up."""
        command, proc = self.commands[name], self.supervisor.get(name)
        url = command.ready_url
        if url is None:
            return

        def ready() -> bool:
            if not proc.running():
                raise NotReady(f"{name} exited before it was ready; {proc.log}:\n"
                               f"{proc.log_tail()}")
            done = netns.run_in(command.ns, ["curl", "-sf", "-m", "2", "-o", "/dev/null", url],
                                check=False, env=self.env)
            return done.returncode == 0

        wait_until(ready, self.options.ready_timeout, f"{name} ready ({url})",
                   lambda: f"{proc.log}:\n{proc.log_tail()}")
