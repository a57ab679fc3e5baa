"""The agents' long-running process, apart from the command that checked them.

``gossamer proxy run`` (and ``ingress run``) reads and checks every input with the CLI's
full means (click, the Dataplane's or ZoneIngress's pydantic model, ``cryptography`` for
the MeshMetric key pair) and then replaces itself (``exec_runtime``: ``execv``, same PID,
same signals, same parent) with ``python -m cli.agent_runtime FD``, a fresh interpreter
that imports only what the agent runs: the agent (``SIDECAR`` or ``INGRESS``), gRPC,
the resolver. The checked settings travel in a memfd (an anonymous in-memory file that
exists only for this process; it holds the token, so it is never a file on disk) as a
pickle, read once and closed. A module of the CLI layer because it builds the process;
it imports no click.

Why: what a Python process imports stays mapped and allocated for its lifetime, and a
sidecar lives as long as its workload, beside every instance of every service. Checking
in the command and running in a fresh interpreter keeps pydantic and ``cryptography``
(about 25 MB together) out of the agent (issue 17) without giving up any check; the
cost is one interpreter start, a few tens of milliseconds.
"""

from __future__ import annotations

import importlib
import os
import pickle
import sys
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from proxy.agent.settings import EnvoyAgentSettings

MODULE = "cli.agent_runtime"


SELF_EXE = "/proc/self/exe"
SIDECAR = "proxy.agent.agent:Agent"
INGRESS = "zone_ingress.agent:IngressAgent"
EGRESS = "zone_egress.agent:EgressAgent"


def exec_runtime(log_level: str, settings: EnvoyAgentSettings, agent: str = SIDECAR
                 ) -> NoReturn:
    """Become the runtime running ``agent`` (``module:class``, built from ``settings``);
    never returns."""
    fd = os.memfd_create("gossamer-agent-settings", 0)
    with open(fd, "wb", closefd=False) as f:
        f.write(pickle.dumps((log_level, agent, settings), protocol=pickle.HIGHEST_PROTOCOL))
    os.lseek(fd, 0, os.SEEK_SET)
    os.set_inheritable(fd, True)
    sys.stdout.flush()
    sys.stderr.flush()
    # This interpreter's own binary, through /proc: with --transparent the command runs as
    # the sidecar's user, who may not traverse the path to it (a pyenv under /root);
    # argv[0] stays sys.executable, from which Python finds its venv.
    os.execv(SELF_EXE, [sys.executable, "-m", MODULE, str(fd)])


def read_settings(fd: int) -> tuple[str, str, EnvoyAgentSettings]:
    with open(fd, "rb") as f:  # closes the memfd: the token is in this process only
        log_level, agent, settings = pickle.load(f)
    return log_level, agent, settings


def main(argv: list[str]) -> None:
    if len(argv) != 1 or not argv[0].isdigit():
        print(f"usage: python -m {MODULE} FD (started by `gossamer proxy run`)",
              file=sys.stderr)
        raise SystemExit(2)
    from cli.agent_process import run_agent_process

    log_level, agent, settings = read_settings(int(argv[0]))
    module, _, name = agent.partition(":")
    if agent not in (SIDECAR, INGRESS, EGRESS):
        raise SystemExit(f"error: no agent {agent!r}")
    make = getattr(importlib.import_module(module), name)
    run_agent_process(log_level, lambda: make(settings))


if __name__ == "__main__":
    main(sys.argv[1:])
