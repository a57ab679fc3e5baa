"""The one body of the agent commands: set up logging, build the agent, run it, report.

``run_agent_process`` is what ``proxy run`` and ``ingress run`` do once their options are
read. Building the agent (the command's ``build_settings`` and the agent's constructor)
happens inside it, so that every failure is reported the same way: an ``AgentError``
(an input the command checks, a refusal by the control plane, an Envoy that cannot
start) is its ``error:`` lines on stderr and its exit code (2 for an input, else 1); an
``OSError`` is one ``error:`` line and exit 1; Ctrl-C before the signal handlers are in
place is exit 130. Never a traceback. SIGINT/SIGTERM once running drain Envoy and exit 0
(``proxy.agent.agent.run_agent``).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from cli.serve import LOG_FORMAT
from proxy.agent.errors import AgentError, DataplaneFileError, EnvoyCannotStart

if TYPE_CHECKING:
    from proxy.agent.agent import Supervised

def error_lines(exc: AgentError) -> list[str]:
    """What the command prints for ``exc``: an ``error:`` line, then the Dataplane file's
    field errors or the tail of Envoy's log."""
    if isinstance(exc, DataplaneFileError):
        first, *rest = exc.lines()
        return [f"error: {first}", *rest]
    lines = [f"error: {exc.detail}"]
    if isinstance(exc, EnvoyCannotStart):
        if exc.log_tail:
            lines.append("the last lines of Envoy's log:")
            lines += [f"  | {line}" for line in exc.log_tail]
        else:
            lines.append("Envoy wrote nothing to its log")
    return lines


def run_agent_process(log_level: str, build: Callable[[], Supervised]) -> None:
    """Run the agent ``build`` makes until a signal or a failure, then exit as above."""
    # Not proxy.agent.agent.run_agent: that module is the sidecar's, which the ingress
    # does not load (the Dataplane model, the resolver).
    from gossamer.process import run_until_signal

    async def run_agent(agent: Supervised) -> None:
        await run_until_signal(agent, abort=lambda: agent.stop(drain=False),
                               reload=agent.reload)

    # gRPC's C core logs connection events (a GOAWAY from a restarting control plane) on
    # stderr by itself; the agent reports what matters in its own log lines.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    logging.basicConfig(level=log_level.upper(), format=LOG_FORMAT)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        asyncio.run(run_agent(build()))
    except AgentError as exc:
        for line in error_lines(exc):
            click.echo(line, err=True)
        raise click.exceptions.Exit(exc.exit_code) from None
    except OSError as exc:
        click.echo(f"error: {exc}", err=True)
        raise click.exceptions.Exit(1) from None
    except KeyboardInterrupt:
        raise click.exceptions.Exit(130) from None
