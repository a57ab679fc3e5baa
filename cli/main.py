"""The ``gossamer`` console command: one click group, its subcommands from small modules.

``GossamerGroup`` is where errors end: any ``GossamerError`` (a user's mistake, a
server's refusal, an unreachable control plane) prints one ``error:`` line, plus one line
per field error, on stderr and exits 1, never with a traceback. A usage error (a bad flag
value, a missing option, flags that exclude each other) is one ``error:`` line too, naming
the command's ``--help``, and exits 2. ``httpx`` errors are
translated inside ``cli.client``; catching ``httpx.HTTPError`` here is only a
backstop for one that slipped through. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from typing import Any

import click
import httpx

from cli import (
    config_cmd,
    demo,
    inspect,
    mesh_cmd,
    proxy_redirect,
    resources,
    run_global,
    run_ingress,
    run_proxy,
    run_zone,
    tokens,
)
from cli.state import CliState, Runtime
from gossamer import __version__
from gossamer.errors import GossamerError, Unauthorized


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


class GossamerGroup(click.Group):
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
        except httpx.HTTPError as exc:
            click.echo(f"error: {exc}", err=True)
            raise click.exceptions.Exit(1) from None


@click.group(cls=GossamerGroup, context_settings={"help_option_names": ["-h", "--help"]})
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


@main.group("global")
def global_() -> None:
    """The global control plane."""


global_.add_command(run_global.run)


@main.group()
def zone() -> None:
    """A zone control plane."""


zone.add_command(run_zone.run)


@main.group()
def proxy() -> None:
    """The sidecar agent: Envoy programmed by the zone control plane."""


proxy.add_command(run_proxy.run)
proxy.add_command(proxy_redirect.redirect)


@main.group()
def ingress() -> None:
    """The zone ingress: other zones reach this zone's services through it."""


ingress.add_command(run_ingress.run)


@main.command()
def version() -> None:
    """Print the CLI's version."""
    click.echo(f"gossamer {__version__}")


main.add_command(resources.apply)
main.add_command(resources.get)
main.add_command(resources.delete)
main.add_command(tokens.token)
main.add_command(config_cmd.config)
main.add_command(inspect.inspect)
inspect.inspect.add_command(mesh_cmd.inspect_meshes)
main.add_command(mesh_cmd.mesh)
main.add_command(demo.demo)
