"""The one body of the agent commands: set up logging, build the agent, run it, report.

``run_agent_process`` is what ``ingress run`` does once its options are read, and what
the sidecar's lean runtime (``cli.agent_runtime``) does once ``proxy run`` has checked
its inputs and handed over. Building the agent (the command's ``build_settings`` and the
agent's constructor) happens inside ``reported``, so that every failure is reported the
same way: an ``AgentError`` (an input the command checks, a refusal by the control plane,
an Envoy that cannot start) is its ``error:`` lines on stderr and its exit code (2 for an
input, else 1); an ``OSError`` is one ``error:`` line and exit 1; Ctrl-C before the
signal handlers are in place is exit 130. Never a traceback. SIGINT/SIGTERM once running
drain Envoy and exit 0 (``gossamer.process.run_until_signal``).

No click here: the sidecar's runtime imports this module and nothing of the CLI's
option parsing (issue 17), so errors are written to ``sys.stderr`` and the exit is a
``SystemExit``, which click passes through unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn, TypeVar

from proxy.agent.errors import AgentError, DataplaneFileError, EnvoyCannotStart

if TYPE_CHECKING:
    from proxy.agent.agent import Supervised

T = TypeVar("T")
# cli.serve.LOG_FORMAT, written again rather than imported: that module loads click
# (tests/unit/test_agent_runtime.py checks that the two agree).
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


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


def setup_logging(log_level: str) -> None:
    # gRPC's C core logs connection events (a GOAWAY from a restarting control plane) on
    # stderr by itself; the agent reports what matters in its own log lines.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    logging.basicConfig(level=log_level.upper(), format=LOG_FORMAT)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # HTTP/2 under grpclib: at debug level hpack logs every header, the token's too.
    for name in ("hpack", "h2", "grpclib"):
        logging.getLogger(name).setLevel(max(logging.INFO, logging.getLogger().level))


def reported(step: Callable[[], T]) -> T:
    """``step()``, with its failure reported as above and turned into the exit code."""
    try:
        return step()
    except AgentError as exc:
        _fail(error_lines(exc), exc.exit_code)
    except OSError as exc:
        _fail([f"error: {exc}"], 1)
    except KeyboardInterrupt:
        raise SystemExit(130) from None


def _fail(lines: list[str], code: int) -> NoReturn:
    for line in lines:
        print(line, file=sys.stderr)
    sys.stderr.flush()
    raise SystemExit(code) from None


def run_agent_process(log_level: str, build: Callable[[], Supervised]) -> None:
    """Run the agent ``build`` makes until a signal or a failure, then exit as above."""
    # Not proxy.agent.agent.run_agent: that module is the sidecar's, which the ingress
    # does not load (the Dataplane model, the resolver).
    from gossamer.process import run_until_signal

    async def run_agent(agent: Supervised) -> None:
        await run_until_signal(agent, abort=lambda: agent.stop(drain=False),
                               reload=agent.reload)

    setup_logging(log_level)
    reported(lambda: asyncio.run(run_agent(build())))
