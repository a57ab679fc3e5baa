"""Running Envoy: start it, restart it when it dies, drain it on the way out.

``EnvoyCommand.argv`` is the command line (pure). Envoy gets ``--use-dynamic-base-id``:
several Envoys on one host need distinct base ids for their hot-restart sockets, and a
fixed id derived from the Dataplane's name can still collide (the same name in two
meshes, a zone ingress on the host); the dynamic one is picked atomically by Envoy and
written to ``envoy-base-id`` in the work directory for debugging. Its stdout and stderr
(where it logs) are appended to ``envoy.log`` in the work directory, each start marked by
one header line. Where util-linux's ``setpriv`` exists, Envoy is started through
``setpriv --pdeathsig TERM`` (which then execs Envoy, same pid), so an agent killed
without a chance to clean up (SIGKILL, OOM) does not leave an orphaned Envoy holding
its ports.

``EnvoySupervisor.run`` is the supervision loop:

* if Envoy exits within ``startup_window`` seconds of its *first* start it cannot start
  (its admin port is taken, the bootstrap is refused): ``run`` raises ``EnvoyCannotStart``
  with the tail of this start's log, and the agent exits non-zero with it;
* any later exit is a crash: Envoy is started again after an exponential backoff with
  jitter, reset once it has stayed up for ``healthy_after`` seconds;
* ``stop`` drains: ``POST /drain_listeners?graceful`` on the admin port (existing
  connections are told to close, listeners close at the end of the drain time), waits
  until no downstream connection is left or the drain time is over, then SIGTERM, then
  SIGKILL after ``kill_after``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import random
import shutil
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from proxy.agent.errors import EnvoyCannotStart

log = logging.getLogger(__name__)

ENVOY_LOG_LEVELS = ("trace", "debug", "info", "warning", "error", "critical", "off")


@dataclass(frozen=True)
class EnvoyCommand:
    """How to start Envoy; ``extra_args`` go last (tests, debugging)."""

    binary: Path
    bootstrap: Path
    work_dir: Path
    concurrency: int = 1
    log_level: str = "info"
    drain_time: float = 5.0
    extra_args: Sequence[str] = field(default_factory=tuple)
    wrapper: Sequence[str] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.log_level not in ENVOY_LOG_LEVELS:
            raise ValueError(f"unknown Envoy log level {self.log_level!r}")
        # Envoy runs with work_dir as its cwd, so a relative bootstrap path (the default
        # --work-dir is relative) would be resolved against the wrong directory.
        object.__setattr__(self, "bootstrap", self.bootstrap.absolute())
        object.__setattr__(self, "work_dir", self.work_dir.absolute())

    @property
    def log_file(self) -> Path:
        return self.work_dir / "envoy.log"

    def argv(self) -> list[str]:
        return [*self.wrapper, str(self.binary), "--config-path", str(self.bootstrap),
                "--concurrency", str(self.concurrency),
                "--log-level", self.log_level,
                "--drain-time-s", str(max(1, math.ceil(self.drain_time))),
                "--drain-strategy", "immediate",
                "--use-dynamic-base-id",
                "--base-id-path", str(self.work_dir / "envoy-base-id"),
                *self.extra_args]


def parent_death_wrapper() -> tuple[str, ...]:
    """``setpriv --pdeathsig TERM --`` if available: Envoy dies with the agent."""
    setpriv = shutil.which("setpriv")
    return (setpriv, "--pdeathsig", "TERM", "--") if setpriv else ()


@dataclass(frozen=True)
class SupervisionPolicy:
    """Timings of the supervision loop, in seconds."""

    startup_window: float = 5.0
    restart_initial: float = 0.5
    restart_max: float = 30.0
    healthy_after: float = 30.0
    kill_after: float = 5.0
    tail_lines: int = 20


def log_tail(path: Path, offset: int, lines: int) -> list[str]:
    """The last ``lines`` lines written to ``path`` after ``offset``."""
    try:
        with open(path, "rb") as f:
            f.seek(max(offset, os.path.getsize(path) - 64 * 1024))
            data = f.read()
    except OSError:
        return []
    return [line for line in data.decode("utf-8", "replace").splitlines() if line][-lines:]


def active_connections(stats: str) -> int:
    """Open downstream connections on Envoy's listeners (not its admin), from the text
    of ``/stats?filter=downstream_cx_active``."""
    total = 0
    for line in stats.splitlines():
        name, _, value = line.partition(": ")
        if (name.startswith("listener.") and name.endswith(".downstream_cx_active")
                and not name.startswith("listener.admin.") and ".worker_" not in name
                and value.strip().isdigit()):
            total += int(value)
    return total


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class EnvoySupervisor:
    def __init__(self, command: EnvoyCommand, admin_port: int,
                 policy: SupervisionPolicy = SupervisionPolicy(),
                 rng: random.Random | None = None) -> None:
        self.command = command
        self.admin_port = admin_port
        self.policy = policy
        self._rng = rng or random.Random()
        self._process: asyncio.subprocess.Process | None = None
        self._stopping = asyncio.Event()
        self.starts = 0
        self.started_at: float | None = None  # loop time of the running Envoy's start
        self.running = asyncio.Event()

    @property
    def pid(self) -> int | None:
        proc = self._process
        return proc.pid if proc is not None and proc.returncode is None else None

    async def run(self) -> None:
        """Supervise until ``stop``; raise ``EnvoyCannotStart`` if the first start fails."""
        loop = asyncio.get_running_loop()
        delay = self.policy.restart_initial
        while not self._stopping.is_set():
            offset = self._log_size()
            proc = await self._spawn()
            self.started_at = started = loop.time()
            code = await proc.wait()
            self.running.clear()
            lived = loop.time() - started
            if self._stopping.is_set():
                return
            if self.starts == 1 and lived < self.policy.startup_window:
                tail = log_tail(self.command.log_file, offset, self.policy.tail_lines)
                raise EnvoyCannotStart(f"Envoy {describe_exit(code)} {lived:.1f}s after it "
                                       f"started (log: {self.command.log_file})", tail)
            if lived > self.policy.healthy_after:
                delay = self.policy.restart_initial
            wait = delay * (0.5 + self._rng.random())
            log.warning("Envoy (pid %d) %s after %.0fs; restarting in %.1fs",
                        proc.pid, describe_exit(code), lived, wait)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), wait)
            delay = min(delay * 2, self.policy.restart_max)

    async def _spawn(self) -> asyncio.subprocess.Process:
        self.starts += 1
        argv = self.command.argv()
        with open(self.command.log_file, "ab") as out:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            out.write(f"--- gossamer: {stamp} start #{self.starts}: {' '.join(argv)}\n"
                      .encode())
            out.flush()
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
                cwd=self.command.work_dir)
        self._process = proc
        self.running.set()
        log.info("Envoy started (pid %d), log in %s", proc.pid, self.command.log_file)
        return proc

    def _log_size(self) -> int:
        try:
            return os.path.getsize(self.command.log_file)
        except OSError:
            return 0

    async def stop(self, drain: bool = True) -> None:
        """Drain (if asked and Envoy runs), then stop Envoy; bounded by drain + kill time."""
        self._stopping.set()
        proc = self._process
        if proc is None or proc.returncode is not None:
            return
        if drain:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drain(proc), self.command.drain_time)
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), self.policy.kill_after)
            except TimeoutError:
                log.warning("Envoy (pid %d) ignored SIGTERM; killing it", proc.pid)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        log.info("Envoy (pid %d) stopped", proc.pid)

    async def _drain(self, proc: asyncio.subprocess.Process) -> None:
        """Ask Envoy to drain and return once its connections are gone (or it exited)."""
        admin = f"http://127.0.0.1:{self.admin_port}"
        async with httpx.AsyncClient(timeout=1.0) as client:
            try:
                response = await client.post(f"{admin}/drain_listeners?graceful")
            except httpx.HTTPError as exc:
                log.warning("could not ask Envoy to drain (%s); stopping it now", exc)
                return
            if response.status_code != 200:
                log.warning("Envoy refused to drain (HTTP %d); stopping it now",
                            response.status_code)
                return
            log.info("draining Envoy for up to %gs", self.command.drain_time)
            while proc.returncode is None:
                try:
                    stats = await client.get(f"{admin}/stats?filter=downstream_cx_active$")
                except httpx.HTTPError:
                    return
                if active_connections(stats.text) == 0:
                    return
                await asyncio.sleep(0.1)
