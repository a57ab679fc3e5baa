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

``hot_restart`` replaces a running Envoy without dropping a connection (the agent's token
changed, and the bootstrap carries it as ADS metadata): Envoy's own hot restart. The next
epoch starts with ``--restart-epoch N`` and the base id the first one wrote to
``envoy-base-id``; it initializes from the rewritten bootstrap (its ADS stream, with the
new token, fetches listeners and clusters first), takes the listen sockets and the admin
port from its parent, which then drains for the drain time and is told to exit at
``--parent-shutdown-time-s``. From then on the supervisor follows the new process. A new
epoch that dies while its parent still runs is a failed hot restart (no parent to join,
a bootstrap it refused): logged, and the fallback is a plain restart, since the parent
still runs the old bootstrap: the parent is drained and stopped, and the loop starts
Envoy again from the new bootstrap like after a crash. A crash always restarts at epoch
0 with a new dynamic base id.
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

from proxy.agent import admin_http
from proxy.agent.errors import EnvoyCannotStart

log = logging.getLogger(__name__)

ENVOY_LOG_LEVELS = ("trace", "debug", "info", "warning", "error", "critical", "off")
# After its drain time, how long a hot-restarted parent may still take before it exits.
PARENT_GRACE = 2


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

    @property
    def base_id_file(self) -> Path:
        return self.work_dir / "envoy-base-id"

    def argv(self, epoch: int = 0, base_id: int | None = None) -> list[str]:
        """Epoch 0 picks a free base id (and writes it down); a later epoch joins the
        running Envoy's ``base_id`` as its hot-restart child."""
        drain = max(1, math.ceil(self.drain_time))
        if epoch == 0:
            ids = ["--use-dynamic-base-id", "--base-id-path", str(self.base_id_file)]
        elif base_id is None:
            raise ValueError("a hot restart needs the running Envoy's base id")
        else:
            ids = ["--base-id", str(base_id), "--restart-epoch", str(epoch)]
        return [*self.wrapper, str(self.binary), "--config-path", str(self.bootstrap),
                "--concurrency", str(self.concurrency),
                "--log-level", self.log_level,
                "--drain-time-s", str(drain),
                "--parent-shutdown-time-s", str(drain + PARENT_GRACE),
                "--drain-strategy", "immediate",
                *ids, *self.extra_args]


def read_base_id(path: Path) -> int | None:
    """The base id a running Envoy wrote (``None`` if absent or not a number)."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


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
        self._process: asyncio.subprocess.Process | None = None  # the newest epoch
        self._parent: asyncio.subprocess.Process | None = None  # the epoch it replaced
        self._replaced = asyncio.Event()
        self._fallback: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.starts = 0
        self.epoch = 0
        self.hot_restarts = 0
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
            first = self.starts == 1
            proc = await self._follow(proc)
            code = proc.returncode
            assert code is not None
            self.running.clear()
            lived = loop.time() - (self.started_at or loop.time())
            if self._stopping.is_set():
                return
            if first and self.hot_restarts == 0 and lived < self.policy.startup_window:
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

    async def _follow(self, proc: asyncio.subprocess.Process) -> asyncio.subprocess.Process:
        """Wait for the Envoy in charge to exit, following hot restarts; the one that did.
        A new epoch that exits while its parent still runs failed to take over: the
        parent is in charge again, until the fallback restart stops it."""
        while True:
            if self._process is not None and self._process is not proc:
                proc = self._process
            self._replaced.clear()
            exited = asyncio.ensure_future(proc.wait())
            replaced = asyncio.ensure_future(self._replaced.wait())
            try:
                await asyncio.wait({exited, replaced}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                exited.cancel()
                replaced.cancel()
            if proc.returncode is None:
                continue  # a hot restart: follow the new epoch
            parent = self._parent
            if parent is None or parent.returncode is not None or self._stopping.is_set():
                return proc
            log.error("the hot restart failed: Envoy epoch %d (pid %d) %s (log: %s); "
                      "restarting Envoy (pid %d) plainly: drain, stop, start", self.epoch,
                      proc.pid, describe_exit(proc.returncode), self.command.log_file,
                      parent.pid)
            self._process, self._parent, proc = parent, None, parent
            self.running.set()
            self._fallback = asyncio.ensure_future(self._drain_and_stop(parent))

    async def hot_restart(self) -> bool:
        """Replace the running Envoy by the next epoch, which reads the bootstrap again
        (see the module's notes); whether one was started. Nothing is started while
        Envoy is not running or is stopping, or without the base id to join."""
        parent = self._process
        if self._stopping.is_set() or parent is None or parent.returncode is not None:
            return False
        base_id = read_base_id(self.command.base_id_file)
        if base_id is None:
            log.warning("cannot hot restart Envoy: no base id in %s",
                        self.command.base_id_file)
            return False
        previous = self._parent
        if previous is not None and previous.returncode is None:
            # Envoy hands over between two epochs only: the last one must be gone.
            await previous.wait()
        if self._process is not parent or parent.returncode is not None:
            return False  # it exited meanwhile: the supervision loop restarts it
        self._parent = parent
        await self._spawn(self.epoch + 1, base_id)
        self.hot_restarts += 1
        self._replaced.set()
        return True

    async def _spawn(self, epoch: int = 0,
                     base_id: int | None = None) -> asyncio.subprocess.Process:
        self.starts += 1
        self.epoch = epoch
        argv = self.command.argv(epoch, base_id)
        with open(self.command.log_file, "ab") as out:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            out.write(f"--- gossamer: {stamp} start #{self.starts}: {' '.join(argv)}\n"
                      .encode())
            out.flush()
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
                cwd=self.command.work_dir)
        self._process = proc
        self.started_at = asyncio.get_running_loop().time()
        self.running.set()
        log.info("Envoy started (pid %d, epoch %d), log in %s", proc.pid, epoch,
                 self.command.log_file)
        return proc

    def _log_size(self) -> int:
        try:
            return os.path.getsize(self.command.log_file)
        except OSError:
            return 0

    async def stop(self, drain: bool = True) -> None:
        """Drain (if asked and Envoy runs), then stop Envoy (and a parent still draining
        after a hot restart); bounded by drain + kill time."""
        self._stopping.set()
        proc = self._process
        if proc is None or proc.returncode is not None:
            await self._terminate(self._parent)
            return
        if drain:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drain(proc), self.command.drain_time)
        await asyncio.gather(self._terminate(proc), self._terminate(self._parent))
        log.info("Envoy (pid %d) stopped", proc.pid)

    async def _drain_and_stop(self, proc: asyncio.subprocess.Process) -> None:
        """The fallback of a failed hot restart: its exit makes ``run`` start Envoy anew."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drain(proc), self.command.drain_time)
        await self._terminate(proc)

    async def _terminate(self, proc: asyncio.subprocess.Process | None) -> None:
        """SIGTERM, then SIGKILL after ``kill_after``; nothing if it already exited."""
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), self.policy.kill_after)
        except TimeoutError:
            log.warning("Envoy (pid %d) ignored SIGTERM; killing it", proc.pid)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    async def _drain(self, proc: asyncio.subprocess.Process) -> None:
        """Ask Envoy to drain and return once its connections are gone (or it exited)."""
        port = self.admin_port
        try:
            response = await admin_http.request(port, "POST", "/drain_listeners?graceful")
        except admin_http.AdminUnreachable as exc:
            log.warning("could not ask Envoy to drain (%s); stopping it now", exc)
            return
        if response.status != 200:
            log.warning("Envoy refused to drain (HTTP %d); stopping it now", response.status)
            return
        log.info("draining Envoy for up to %gs", self.command.drain_time)
        # Only while stopping, bounded by the drain time: Envoy tells no one when its
        # last connection closes, so the count is read every 100 ms.
        while proc.returncode is None:
            try:
                stats = await admin_http.request(
                    port, "GET", "/stats?filter=downstream_cx_active$")
            except admin_http.AdminUnreachable:
                return
            if active_connections(stats.text) == 0:
                return
            await asyncio.sleep(0.1)
