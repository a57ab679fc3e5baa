"""The chaos harness of issue 15: every part of a production topology as a real process on
one host (the load is ``chaos_load``, the scenario ``chaos_run``).

``Topology.up()`` starts a throwaway PostgreSQL (``tests/pg.py``) with one database for
the global and one per zone; three ``gossamer global run`` replicas on the first; per
zone (``east``, ``west``) two ``gossamer zone run`` replicas on the zone's database,
each given every global replica's sync address; in east ``backend-1`` (a real
``gossamer proxy run`` with Envoy in front of a small HTTP app) and east's ingress
(``gossamer ingress run``); in west ``web-1``, whose explicit outbound reaches backend
in east through that ingress. Every agent is given both of its zone's replicas
(``--cp a,b``) and the CA file of the one it dials second (they share one CA). A
``ControlPlane`` is killed with SIGKILL and started again on the same data and ports.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import re
import signal
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.integration.agent_env import envoy_pids
from tests.integration.cli_env import Proc, _clean_env
from tests.integration.ingress_env import free_port
from tests.integration.test_agent_zone import DATAPLANE_YAML, OUTBOUND
from tests.pg import PostgresCluster
from tests.waiting import eventually_sync, ready

GOSSAMER = Path(sys.executable).parent / "gossamer"
ZONES = ("east", "west")
LEASE = 4.0  # --leader-lease of every control plane (seconds)
READY_WITHIN = 120.0
BEAT = ("--heartbeat-interval", "1s", "--heartbeat-timeout", "3s")
_LEADER = re.compile(r'^gossamer_leader\{lease="(\w+)"\} (\S+)$', re.M)


# -- processes ---------------------------------------------------------------------------


@dataclass
class ControlPlane:
    """A global or zone CP replica; ``proc`` is started again on the same data and ports."""

    name: str
    lease: str  # its lease's name: "global" or "zone"
    proc: Proc
    data_dir: Path

    def kill(self) -> None:
        assert self.proc.popen is not None
        self.proc.popen.send_signal(signal.SIGKILL)
        self.proc.popen.wait()

    def launch(self) -> None:
        """Start the process without waiting for it (``ready`` does)."""
        with open(self.proc.log_path, "ab") as log:
            self.proc.popen = subprocess.Popen(
                [str(GOSSAMER), *self.proc.args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.proc.env,
            )

    def ready(self) -> None:
        """Wait for ``/readyz``. Six control planes start at once on a shared two-core
        machine: their imports alone take tens of seconds there, hence the deadline."""
        assert self.proc.popen is not None
        ready(self.proc.popen, self.proc.api, self.proc.log_path, READY_WITHIN)

    def start(self) -> None:
        self.launch()
        self.ready()

    def alive(self) -> bool:
        return self.proc.popen is not None and self.proc.popen.poll() is None

    @property
    def api(self) -> str:
        return self.proc.api

    def token(self) -> str:
        return (self.data_dir / "admin-token").read_text().strip()

    def leading(self) -> bool:
        """``gossamer_leader`` of its lease on ``/metrics`` (False when it does not answer)."""
        if not self.alive():
            return False
        try:
            text = httpx.get(f"{self.api}/metrics", timeout=1.0).text
        except httpx.HTTPError:
            return False
        return any(
            m.group(1) == self.lease and float(m.group(2)) == 1.0 for m in _LEADER.finditer(text)
        )

    def get(self, path: str) -> httpx.Response:
        return httpx.get(
            f"{self.api}{path}", timeout=5.0, headers={"Authorization": f"Bearer {self.token()}"}
        )


def control_plane(
    tmp: Path, name: str, lease: str, args: list[str], lease_s: float = LEASE
) -> ControlPlane:
    data, api = tmp / name, f"127.0.0.1:{free_port()}"
    full = [
        *args,
        "--data-dir",
        str(data),
        "--api-addr",
        api,
        *BEAT,
        "--leader-lease",
        f"{lease_s:g}s",
    ]
    proc = Proc(full, tmp / f"{name}.log", f"http://{api}", _clean_env(tmp / f"{name}.yaml"))
    return ControlPlane(name, lease, proc, data)


@dataclass
class Agent:
    """A ``gossamer proxy run`` or ``gossamer ingress run`` process and its Envoy."""

    name: str
    args: list[str]
    directory: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**_clean_env(self.directory / "config.yaml"), "GOSSAMER_DNS_ADDR": "127.0.0.1:0"}
        with open(self.directory / "agent.log", "ab") as log:
            self.popen = subprocess.Popen(
                [str(GOSSAMER), *self.args, "--work-dir", str(self.directory / "work")],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()
        for pid in envoy_pids(self.directory / "work"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def log(self) -> str:
        path = self.directory / "agent.log"
        return path.read_text(errors="replace") if path.exists() else ""


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = b"hello from east"
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _App(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


# -- the topology ------------------------------------------------------------------------


@dataclass
class Topology:
    tmp: Path
    pg: PostgresCluster | None = None
    globals: list[ControlPlane] = field(default_factory=list)
    zones: dict[str, list[ControlPlane]] = field(default_factory=dict)
    agents: list[Agent] = field(default_factory=list)
    outbound: int = 0
    app: _App | None = None
    began: float = 0.0  # monotonic, when ``up`` began
    lease: float = LEASE  # every control plane's --leader-lease, seconds

    def everything(self) -> list[ControlPlane]:
        return [*self.globals, *(cp for cps in self.zones.values() for cp in cps)]

    def up(self) -> None:
        self.began = time.monotonic()
        self.pg = PostgresCluster.create()
        store = self.pg.create_database("chaos_global")
        for i in range(3):
            self.globals.append(
                control_plane(
                    self.tmp,
                    f"global-{i}",
                    "global",
                    ["global", "run", "--store", store, "--sync-addr", f"127.0.0.1:{free_port()}"],
                    self.lease,
                )
            )
        # The first stores the admin token and the CA the others adopt; then the rest of
        # the control planes start side by side.
        self.globals[0].start()
        wait(self.globals[0].leading, 30, "the first global replica to lead")
        syncs = ",".join(
            f"grpcs://{c.proc.args[c.proc.args.index('--sync-addr') + 1]}" for c in self.globals
        )
        ca = self.globals[0].data_dir / "tls" / "ca.pem"
        for zone in ZONES:
            token = self.token("/tokens/zone", {"zone": zone, "scopes": ["cp"]}, f"{zone}-cp")
            zstore = self.pg.create_database(f"chaos_{zone}")
            self.zones[zone] = []
            for i in (1, 2):
                cp = control_plane(
                    self.tmp,
                    f"{zone}-{i}",
                    "zone",
                    [
                        "zone",
                        "run",
                        "--zone",
                        zone,
                        "--store",
                        zstore,
                        "--xds-addr",
                        f"127.0.0.1:{free_port()}",
                        "--global",
                        syncs,
                        "--token-file",
                        str(token),
                        "--global-ca",
                        str(ca),
                    ],
                    self.lease,
                )
                self.zones[zone].append(cp)
        for cp in self.everything()[1:]:
            cp.launch()
        for cp in self.everything()[1:]:
            cp.ready()
        self._agents()

    def token(self, route: str, body: dict[str, Any], name: str) -> Path:
        leader = self.globals[0]
        r = httpx.post(
            f"{leader.api}{route}",
            json=body,
            timeout=30.0,
            headers={"Authorization": f"Bearer {leader.token()}"},
        )
        r.raise_for_status()
        path = self.tmp / f"{name}.token"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(r.json()["token"])
        return path

    def cp_args(self, zone: str) -> list[str]:
        """``--cp`` with both of the zone's replicas and the CA they share (one file works
        against either). East's agents dial its leader first, west's its follower: the
        faults kill the replica they are connected to."""
        leader = wait(lambda: self.leader(self.zones[zone]), 30, f"a leader of {zone}")
        replicas = sorted(self.zones[zone], key=lambda cp: (cp is leader) == (zone == "west"))
        cas = {(cp.data_dir / "tls" / "ca.pem").read_text() for cp in replicas}
        assert len(cas) == 1, f"the replicas of {zone} do not share their CA"
        urls = ",".join(
            f"https://{cp.proc.args[cp.proc.args.index('--xds-addr') + 1]}" for cp in replicas
        )
        return ["--cp", urls, "--cp-ca", str(replicas[1].data_dir / "tls" / "ca.pem")]

    def _agents(self) -> None:
        self.app = _App(("127.0.0.1", 0), _Handler)
        threading.Thread(target=self.app.serve_forever, daemon=True, name="app").start()
        app_port = self.app.server_address[1]
        self.outbound = free_port()
        ingress_token = self.token(
            "/tokens/zone", {"zone": "east", "scopes": ["ingress"]}, "east-ingress"
        )
        ingress = self.tmp / "east-ingress"
        ingress.mkdir()
        self.agents.append(
            Agent(
                "east-ingress",
                [
                    "ingress",
                    "run",
                    *self.cp_args("east"),
                    "--token-file",
                    str(ingress_token),
                    "--listen",
                    f"127.0.0.1:{free_port()}",
                    "--admin-port",
                    str(free_port()),
                    "--drain-time",
                    "1s",
                ],
                ingress,
            )
        )
        for name, service, zone, outbound in (
            ("backend-1", "backend", "east", None),
            ("web-1", "web", "west", self.outbound),
        ):
            directory = self.tmp / name
            directory.mkdir()
            dp = directory / "dataplane.yaml"
            dp.write_text(DATAPLANE_YAML + (OUTBOUND if outbound else ""))
            token = self.token("/tokens/dataplane", {"mesh": "default", "service": service}, name)
            args = [
                "proxy",
                "run",
                "--dataplane",
                str(dp),
                "--dataplane-var",
                f"name={name}",
                "--dataplane-var",
                f"service={service}",
                "--dataplane-var",
                f"inbound={free_port()}",
                "--dataplane-var",
                f"app={app_port}",
                *self.cp_args(zone),
                "--token-file",
                str(token),
                "--admin-port",
                str(free_port()),
                "--drain-time",
                "1s",
            ]
            if outbound:
                args += ["--dataplane-var", f"outbound={outbound}"]
            self.agents.append(Agent(name, args, directory))
        for agent in self.agents:
            agent.start()

    def call_url(self) -> str:
        return f"http://127.0.0.1:{self.outbound}/"

    def down(self) -> None:
        for agent in self.agents:
            agent.stop()
        for cp in reversed(self.everything()):
            if cp.alive():
                cp.kill()
        if self.app is not None:
            self.app.shutdown()
        if self.pg is not None:
            self.pg.destroy()

    def logs(self, lines: int = 40) -> str:
        parts = []
        for cp in self.everything():
            tail = "\n".join(cp.proc.log().splitlines()[-lines:])
            parts.append(f"===== {cp.name} =====\n{tail}")
        for agent in self.agents:
            tail = "\n".join(agent.log().splitlines()[-lines:])
            parts.append(f"===== {agent.name} =====\n{tail}")
        return "\n".join(parts)

    def leader(self, cps: list[ControlPlane]) -> ControlPlane | None:
        leading = [cp for cp in cps if cp.leading()]
        return leading[0] if len(leading) == 1 else None


@contextlib.contextmanager
def topology(tmp: Path, lease: float = LEASE) -> Iterator[Topology]:
    env = Topology(tmp, lease=lease)
    try:
        env.up()
        yield env
    finally:
        env.down()


def wait(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """``check()``'s first truthy result, polled every ``interval`` (finer than the
    default: the chaos run times takeovers with it)."""
    return eventually_sync(check, timeout, what, interval=interval)
