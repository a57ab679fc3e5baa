"""The sidecar agent's long-running process, apart from the command that checked it.

``gossamer proxy run`` reads and checks every input with the CLI's full means (click,
the Dataplane's pydantic model, ``cryptography`` for the MeshMetric key pair) and then
replaces itself (``exec_runtime``: ``execv``, same PID, same signals, same parent) with
``python -m cli.agent_runtime FD``, a fresh interpreter that imports only what a sidecar
runs: the agent, gRPC, the resolver. The checked settings travel in a memfd (an
anonymous in-memory file that exists only for this process; it holds the dataplane token,
so it is never a file on disk) as a pickle, read once and closed. A module of the CLI
layer because it builds the process; it imports no click.

Why: what a Python process imports stays mapped and allocated for its lifetime, and a
sidecar lives as long as its workload, beside every instance of every service. Checking
in the command and running in a fresh interpreter keeps pydantic and ``cryptography``
(about 25 MB together) out of the agent (issue 17) without giving up any check; the
cost is one interpreter start, a few tens of milliseconds.
"""

from __future__ import annotations

import os
import pickle
import sys
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from proxy.agent.sidecar_settings import AgentSettings

MODULE = "cli.agent_runtime"


def exec_runtime(log_level: str, settings: AgentSettings) -> NoReturn:
    """Become the runtime with ``settings`` (never returns)."""
    fd = os.memfd_create("gossamer-agent-settings", 0)
    with open(fd, "wb", closefd=False) as f:
        f.write(pickle.dumps((log_level, settings), protocol=pickle.HIGHEST_PROTOCOL))
    os.lseek(fd, 0, os.SEEK_SET)
    os.set_inheritable(fd, True)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", MODULE, str(fd)])


def read_settings(fd: int) -> tuple[str, AgentSettings]:
    with open(fd, "rb") as f:  # closes the memfd: the token is in this process only
        log_level, settings = pickle.load(f)
    return log_level, settings


def main(argv: list[str]) -> None:
    if len(argv) != 1 or not argv[0].isdigit():
        print(f"usage: python -m {MODULE} FD (started by `gossamer proxy run`)",
              file=sys.stderr)
        raise SystemExit(2)
    from cli.agent_process import run_agent_process
    from proxy.agent.agent import Agent

    log_level, settings = read_settings(int(argv[0]))
    run_agent_process(log_level, lambda: Agent(settings))


if __name__ == "__main__":
    main(sys.argv[1:])
