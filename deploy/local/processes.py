"""Processes of a local environment: started in a namespace, tracked by pid files, marked.

Each process is started with ``ip netns exec`` in its own session (so it outlives the
command that started it, for ``--keep`` and ``python -m deploy.local up``), its stdout and
stderr in ``<state>/logs/<name>.log`` and its pid in ``<state>/pids/<name>.pid``. Its
environment carries ``GOSSAMER_LOCAL_ENV=<prefix>``, which its children (Envoy) inherit:
``kill_all`` finds every process of an environment by that mark, by the namespaces it
runs in and by the pid files, so a crashed run leaves nothing that ``down`` cannot find.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from deploy.local import netns

MARK = "GOSSAMER_LOCAL_ENV"


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, exited but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def marked(prefix: str) -> list[int]:
    """Processes whose environment holds this environment's mark."""
    needle = f"{MARK}={prefix}".encode()
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    out.append(int(entry.name))
    return out


def terminate(pids: Iterable[int], grace: float) -> None:
    """SIGTERM, then SIGKILL what is still running after ``grace`` seconds."""
    pending = {p for p in pids if p != os.getpid()}
    for pid in pending:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pending and time.monotonic() < deadline:
        pending = {p for p in pending if alive(p)}
        time.sleep(0.05)  # a poll interval; the bound is the deadline
    for pid in pending:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@dataclass
class Process:
    name: str
    ns: str
    argv: list[str]
    log: Path
    pidfile: Path
    popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        if self.popen is not None:
            return self.popen.pid
        with contextlib.suppress(OSError, ValueError):
            return int(self.pidfile.read_text())
        return None

    def running(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        pid = self.pid
        return pid is not None and alive(pid)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


class Supervisor:
    """Starts and stops the named processes of one environment."""

    def __init__(self, state: Path, prefix: str, env: dict[str, str]) -> None:
        self.state = state
        self.prefix = prefix
        self.env = {**env, MARK: prefix}
        self.processes: dict[str, Process] = {}

    def start(self, name: str, ns: str, argv: Sequence[str]) -> Process:
        old = self.processes.get(name)
        if old is not None and old.running():
            raise RuntimeError(f"{name} is already running (pid {old.pid})")
        proc = Process(name, ns, list(argv), self.state / "logs" / f"{name}.log",
                       self.state / "pids" / f"{name}.pid")
        proc.log.parent.mkdir(parents=True, exist_ok=True)
        proc.pidfile.parent.mkdir(parents=True, exist_ok=True)
        with open(proc.log, "ab") as log:
            log.write(f"--- {time.strftime('%H:%M:%S')} {' '.join(proc.argv)}\n".encode())
            log.flush()
            proc.popen = subprocess.Popen(netns.exec_argv(ns, proc.argv), stdout=log,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          env=self.env, start_new_session=True)
        proc.pidfile.write_text(str(proc.popen.pid))
        self.processes[name] = proc
        return proc

    def get(self, name: str) -> Process:
        try:
            return self.processes[name]
        except KeyError:
            raise KeyError(f"no process {name!r}; there are {sorted(self.processes)}") from None

    def stop(self, name: str, grace: float = 10.0) -> None:
        """SIGTERM (SIGKILL after ``grace``), children included, and reap it."""
        proc = self.get(name)
        pid = proc.pid
        if pid is not None and proc.running():
            terminate(self._tree(pid), grace)
        if proc.popen is not None:
            proc.popen.wait()
        proc.pidfile.unlink(missing_ok=True)

    def kill(self, name: str) -> None:
        """SIGKILL, as a crash would: its children are left to their own fate."""
        proc = self.get(name)
        pid = proc.pid
        if pid is not None and proc.running():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if proc.popen is not None:
            proc.popen.wait()
        proc.pidfile.unlink(missing_ok=True)

    @staticmethod
    def _tree(pid: int) -> list[int]:
        """``pid`` and its descendants, children first (from /proc, no psutil)."""
        children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                    children.setdefault(ppid, []).append(int(entry.name))
        out: list[int] = []
        stack = [pid]
        while stack:
            current = stack.pop()
            out.append(current)
            stack.extend(children.get(current, []))
        return out[::-1]


def kill_all(prefix: str, state: Path | None, namespaces: Iterable[str],
             grace: float = 3.0) -> list[int]:
    """Stop every process of the environment, however it was found; the pids stopped."""
    pids = set(marked(prefix))
    for ns in namespaces:
        pids.update(netns.pids_in(ns))
    # Pid files only say what was started; a stale one may name a reused pid, so they are
    # removed, not trusted: the mark and the namespaces found every process of ours.
    if state is not None and (state / "pids").is_dir():
        for pidfile in (state / "pids").glob("*.pid"):
            pidfile.unlink(missing_ok=True)
    pids = {p for p in pids if alive(p)}
    terminate(pids, grace)
    return sorted(pids)
