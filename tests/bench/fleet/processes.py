"""The fleet's processes: a global CP and zone CPs started with the real ``gossamer`` CLI,
and one simulator worker per zone, none of which may outlive the benchmark.

The control planes run as an operator starts them (``gossamer global run``, ``gossamer
zone run --global grpcs://... --token-file --global-ca``) on free loopback ports, each
with the embedded SQLite store in a temporary ``--data-dir``; zone tokens and dataplane
tokens are issued at the global's HTTP API with its admin token, as ``gossamer token``
does. Every child is started with ``PR_SET_PDEATHSIG`` (SIGKILL when the benchmark dies,
however it dies) and ``Fleet.stop`` terminates them (SIGTERM, then SIGKILL) on any exit,
Ctrl-C included.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

GOSSAMER = Path(sys.executable).parent / "gossamer"
READY_DEADLINE = 60.0
PR_SET_PDEATHSIG = 1
# Open files a zone CP or a worker holds besides its sidecars' connections: SQLite, logs,
# pipes, epoll and event fds, the sync link, HTTP clients.
FD_SLACK = 512


# A zone CP whose Python allocations can be traced (``bench_fleet --trace-memory DIR``):
# SIGUSR1 starts ``tracemalloc``, SIGUSR2 writes a snapshot to the file the environment
# names (``memtrace`` reads it). Signal handlers run on the main thread, between two
# bytecodes of the event loop's work.
TRACE_LAUNCH = """
import os, signal, tracemalloc
def start(*_):
    tracemalloc.start(int(os.environ.get("GOSSAMER_BENCH_TRACE_FRAMES", "12")))
def dump(*_):
    out = os.environ["GOSSAMER_BENCH_TRACE"]
    tracemalloc.take_snapshot().dump(out + ".part")
    os.rename(out + ".part", out)
signal.signal(signal.SIGUSR1, start)
signal.signal(signal.SIGUSR2, dump)
from cli.main import main
main()
"""


def fds_needed(proxies: int, per_channel: int | None) -> int:
    """Open files a zone CP or its worker needs for ``proxies`` sidecars: two
    connections each, or one per ``per_channel`` sidecars (plus the spare one)."""
    connections = 2 * proxies if per_channel is None else -(-proxies // per_channel) + 1
    return connections + FD_SLACK


def raise_nofile(needed: int) -> None:
    """Raise this process's soft limit of open files to ``needed`` (its children inherit
    it); RuntimeError naming the limit to set when the hard limit is lower (raising that
    takes CAP_SYS_RESOURCE, e.g. ``ulimit -Hn`` as root outside a container)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if needed <= soft:
        return
    if hard != resource.RLIM_INFINITY and needed > hard:
        raise RuntimeError(f"{needed} open files needed (two connections per sidecar), "
                           f"the hard limit is {hard}: raise it (ulimit -Hn) or share "
                           "connections (--per-channel N)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the benchmark process ends."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def spawn(args: list[str], log: Path, **kwargs: Any) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(args, stdout=kwargs.pop("stdout", out), stderr=out,
                                preexec_fn=die_with_parent, **kwargs)


@dataclass
class ControlPlane:
    name: str
    proc: subprocess.Popen[bytes]
    api: str
    data_dir: Path
    log: Path
    xds: str = ""

    @property
    def headers(self) -> dict[str, str]:
        token = (self.data_dir / "admin-token").read_text().strip()
        return {"Authorization": f"Bearer {token}"}

    def wait_ready(self, deadline: float = READY_DEADLINE) -> None:
        until = time.monotonic() + deadline
        while time.monotonic() < until:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; its log "
                                   f"({self.log}):\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.api}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready after {deadline}s; see {self.log}")


@dataclass
class Fleet:
    """Everything the benchmark started, in ``root``; ``stop`` ends it all. With
    ``cp_tree`` (a source tree, e.g. ``git archive`` of an older commit) the control
    planes run that tree's code, so two versions can be measured on the same machine."""

    root: Path
    cp_tree: Path | None = None
    trace_memory: Path | None = None  # zone CPs traceable, snapshots here (TRACE_LAUNCH)
    global_cp: ControlPlane | None = None
    zones: list[ControlPlane] = field(default_factory=list)
    workers: list[int] = field(default_factory=list)  # pids of the simulator workers

    def _cp(self, args: list[str], log: Path, trace: str = "") -> subprocess.Popen[bytes]:
        """``gossamer ARGS``: the installed command, or ``cp_tree``'s ``cli.main`` (run
        from inside the tree, so nothing else on the path shadows it); with ``trace`` (a
        snapshot file) through ``TRACE_LAUNCH``."""
        launch = TRACE_LAUNCH if trace else "from cli.main import main; main()"
        env = {**os.environ, "GOSSAMER_BENCH_TRACE": trace}
        if self.cp_tree is None:
            if not trace:
                return spawn([str(GOSSAMER), *args], log)
            return spawn([sys.executable, "-c", launch, *args], log, env=env)
        env["PYTHONPATH"] = str(self.cp_tree)
        return spawn([sys.executable, "-c", launch, *args], log, cwd=self.cp_tree, env=env)

    def snapshot(self, zone: ControlPlane, deadline: float = 300.0) -> Path:
        """A tracemalloc snapshot of ``zone`` (started with ``trace_memory``), written
        by the zone CP itself; waits until the file is complete."""
        assert self.trace_memory is not None
        out = self.trace_memory / f"{zone.name}.snapshot"
        out.unlink(missing_ok=True)
        zone.proc.send_signal(signal.SIGUSR2)
        until = time.monotonic() + deadline
        while not out.exists():
            if time.monotonic() > until or zone.proc.poll() is not None:
                raise RuntimeError(f"{zone.name} wrote no snapshot; see {zone.log}")
            time.sleep(0.2)
        return out

    def start_global(self) -> ControlPlane:
        data, port, sync = self.root / "global", free_port(), free_port()
        args = ["global", "run", "--data-dir", str(data), "--api-addr",
                f"127.0.0.1:{port}", "--sync-addr", f"127.0.0.1:{sync}", "--store", "sqlite",
                "--log-level", "warning"]
        log = self.root / "global.log"
        self.global_cp = ControlPlane("global", self._cp(args, log), f"http://127.0.0.1:{port}",
                                      data, log, xds=f"127.0.0.1:{sync}")
        self.global_cp.wait_ready()
        return self.global_cp

    def post(self, path: str, body: dict[str, Any]) -> Any:
        assert self.global_cp is not None
        r = httpx.post(f"{self.global_cp.api}{path}", json=body,
                       headers=self.global_cp.headers, timeout=30)
        if r.status_code >= 300:
            raise RuntimeError(f"POST {path}: {r.status_code} {r.text}")
        return r.json()

    def start_zones(self, names: list[str]) -> list[ControlPlane]:
        """Start every zone (in parallel), joined with a zone token each; wait until each
        answers /readyz and the global sees it Online."""
        assert self.global_cp is not None
        ca = self.global_cp.data_dir / "tls" / "ca.pem"
        for name in names:
            token_file = self.root / f"{name}.token"
            token_file.write_text(self.post("/tokens/zone", {"zone": name})["token"])
            data, port, xds = self.root / f"zone-{name}", free_port(), free_port()
            args = ["zone", "run", "--zone", name, "--data-dir", str(data),
                    "--api-addr", f"127.0.0.1:{port}", "--xds-addr", f"127.0.0.1:{xds}",
                    "--global", f"grpcs://{self.global_cp.xds}", "--token-file",
                    str(token_file), "--global-ca", str(ca), "--store", "sqlite",
                    "--log-level", "warning"]
            log = self.root / f"zone-{name}.log"
            trace = str(self.trace_memory / f"{name}.snapshot") if self.trace_memory else ""
            self.zones.append(ControlPlane(name, self._cp(args, log, trace),
                                           f"http://127.0.0.1:{port}", data, log,
                                           xds=f"127.0.0.1:{xds}"))
        for zone in self.zones:
            zone.wait_ready()
            self._wait_online(zone.name)
        return self.zones

    def _wait_online(self, zone: str) -> None:
        assert self.global_cp is not None
        until = time.monotonic() + READY_DEADLINE
        while time.monotonic() < until:
            r = httpx.get(f"{self.global_cp.api}/zones/{zone}/_overview",
                          headers=self.global_cp.headers, timeout=5)
            if r.status_code == 200 and r.json().get("insight", {}).get("status") == "Online":
                return
            time.sleep(0.1)
        raise RuntimeError(f"zone {zone} not online at the global after {READY_DEADLINE}s")

    def dataplane_token(self, service: str, max_dataplanes: int) -> str:
        return str(self.post("/tokens/dataplane", {
            "mesh": "default", "service": service, "validFor": "24h",
            "maxDataplanes": max_dataplanes})["token"])

    def stop(self) -> None:
        """SIGTERM to every child, SIGKILL to those still running after 20 s."""
        for pid in self.workers:  # they also exit when their stdin closes
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        procs = [z.proc for z in self.zones]
        if self.global_cp is not None:
            procs.append(self.global_cp.proc)
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        until = time.monotonic() + 20
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, until - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
