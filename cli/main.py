"""The ``gossamer`` console command: one click group, its subcommands from small modules.

``GossamerGroup`` is where errors end: any ``GossamerError`` (a user's mistake, a
server's refusal, an unreachable control plane) prints one ``error:`` line, plus one line
per field error, on stderr and exits 1, never with a traceback. A usage error (a bad flag
value, a missing option, flags that exclude each other) is one ``error:`` line too, naming
the command's ``--help``, and exits 2. Transport errors are translated inside
``cli.client``. Anything else is a bug and keeps its traceback.

Subcommands are imported lazily (``LazyGroup``): running one imports its own module only,
so the sidecar agent started by ``gossamer proxy run`` holds none of the other commands'
libraries (``tests/unit/test_agent_imports.py``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

import click

from cli.state import CliState, Runtime
from gossamer import __version__
from gossamer.errors import GossamerError, Unauthorized

Loader = Callable[[], click.Command]


def _load(target: str) -> Loader:
    """``"module:attr"`` → a loader importing that command when it is first asked for."""
    module, _, attr = target.partition(":")

    def load() -> click.Command:
        command = getattr(importlib.import_module(module), attr)
        assert isinstance(command, click.Command), target
        return command

    return load


class LazyGroup(click.Group):
    """A group whose subcommands are imported when one is run (or listed by ``--help``).

    Each command module imports what its command runs: the agents' gRPC runtime, the
    control planes' stores and HTTP API, the client's YAML. Importing every one of them
    for every command made ``gossamer proxy run`` a process holding the API server and
    the stores (an 82 MB sidecar agent); now ``proxy run`` imports ``cli.run_proxy``
    and what it needs, nothing of the other commands.
    """

    def __init__(self, *args: Any, lazy: Mapping[str, Loader] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy and cmd_name not in self.commands:
            self.add_command(self.lazy[cmd_name](), cmd_name)
        return super().get_command(ctx, cmd_name)


def error_lines(exc: GossamerError) -> list[str]:
    """One line for the error, one per field error (without repeating them in the first)."""
    errors = list(getattr(exc, "field_errors", []) or [])
    detail = exc.detail
    joined = "; ".join(str(e) for e in errors)
    if errors and detail.endswith(": " + joined):
        detail = detail[: -len(joined) - 2]
    if isinstance(exc, Unauthorized):
        detail += " (is the control plane's admin token the one configured?)"
    return [f"error: {detail}", *(f"  {e}" for e in errors)]


def usage_line(exc: click.UsageError) -> str:
    where = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
    return f"error: {exc.format_message().rstrip('.')}{where}"


class GossamerGroup(LazyGroup):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            click.echo(usage_line(exc), err=True)
            raise click.exceptions.Exit(exc.exit_code) from None
        except GossamerError as exc:
            for line in error_lines(exc):
                click.echo(line, err=True)
            raise click.exceptions.Exit(1) from None


def _inspect() -> click.Command:
    from cli import inspect, mesh_cmd

    inspect.inspect.add_command(mesh_cmd.inspect_meshes)
    return inspect.inspect


@click.group(cls=GossamerGroup, context_settings={"help_option_names": ["-h", "--help"]},
             lazy={"apply": _load("cli.resources:apply"), "get": _load("cli.resources:get"),
                   "delete": _load("cli.resources:delete"), "token": _load("cli.tokens:token"),
                   "config": _load("cli.config_cmd:config"), "inspect": _inspect,
                   "mesh": _load("cli.mesh_cmd:mesh"), "demo": _load("cli.demo:demo"),
                   "check": _load("cli.check:check"),
                   "completion": _load("cli.completion:completion")})
@click.option("--context", envvar="GOSSAMER_CONTEXT", default=None, metavar="NAME",
              help="Talk to this control plane from the config instead of the current one.")
@click.version_option(__version__, "--version", prog_name="gossamer")
@click.pass_context
def main(ctx: click.Context, context: str | None) -> None:
    """Gossamer: a multi-zone service mesh.

    Client commands talk to the control plane chosen by --context, else by
    GOSSAMER_ADDRESS (with GOSSAMER_TOKEN_FILE, GOSSAMER_CA_FILE), else the current one
    of `gossamer config control-planes`.
    """
    runtime = ctx.obj if isinstance(ctx.obj, Runtime) else Runtime()
    ctx.obj = CliState(runtime=runtime, context=context)


@main.group("global", cls=LazyGroup, lazy={"run": _load("cli.run_global:run")})
def global_() -> None:
    """The global control plane."""


@main.group(cls=LazyGroup, lazy={"run": _load("cli.run_zone:run")})
def zone() -> None:
    """A zone control plane."""


@main.group(cls=LazyGroup, lazy={"run": _load("cli.run_proxy:run"),
                                 "redirect": _load("cli.proxy_redirect:redirect")})
def proxy() -> None:
    """The sidecar agent: Envoy programmed by the zone control plane."""


@main.group(cls=LazyGroup, lazy={"run": _load("cli.run_ingress:run")})
def ingress() -> None:
    """The zone ingress: other zones reach this zone's services through it."""


@main.group(cls=LazyGroup, lazy={"run": _load("cli.run_egress:run")})
def egress() -> None:
    """The zone egress: the zone's traffic to external services leaves through it."""


@main.command()
def version() -> None:
    """Print the CLI's version."""
    click.echo(f"gossamer {__version__}")
