"""``gossamer config``: the control planes the CLI knows (contexts, like a kubeconfig).

Every change loads the file, builds a new ``CliConfig`` and writes it back atomically
(``cli.config.save_config``); see that module for the file's format.
"""

from __future__ import annotations

import os
import ssl

import click

from cli.config import ConfigError, ConfigFieldError, ControlPlane, load_config, save_config
from cli.output import render_table, to_yaml
from cli.state import state


@click.group()
def config() -> None:
    """The CLI's own configuration (at $GOSSAMER_CONFIG or ~/.config/gossamer/config.yaml)."""


@config.command()
@click.option("--raw", is_flag=True, help="Show inline tokens instead of REDACTED.")
@click.pass_context
def view(ctx: click.Context, raw: bool) -> None:
    """Print the config file."""
    cfg = load_config(state(ctx).config_path)
    click.echo(to_yaml(cfg.to_document(redact=not raw)), nl=False)


@config.group("control-planes")
def control_planes() -> None:
    """Add, switch between, list and remove control planes."""


def _warn_unless_file(path: str | None, what: str) -> None:
    if path is not None and not os.path.isfile(path):
        click.echo(f"warning: the {what} {path} does not exist (yet)", err=True)


@control_planes.command()
@click.argument("name_arg", metavar="[NAME]", required=False)
@click.option("--name", default=None, help="A name for this control plane (or give it as NAME).")
@click.option("--address", required=True, metavar="URL",
              help="Its API, e.g. http://127.0.0.1:5681 or https://cp.example.com:5681 "
                   "(an API listening beyond loopback always speaks TLS).")
@click.option("--token-file", type=click.Path(dir_okay=False), default=None,
              help="A file holding the admin token; its absolute path is stored and the "
                   "file is read at each command, so a rotated token needs no re-add.")
@click.option("--token", default=None, help="The admin token itself, stored in the config.")
@click.option("--ca-file", type=click.Path(dir_okay=False), default=None,
              help="A PEM CA bundle to verify an https:// address with: the control "
                   "plane's DATA_DIR/tls/ca.pem unless it serves a certificate of your own. "
                   "Without it the system's trusted CAs are used.")
@click.option("--overwrite", is_flag=True, help="Replace a control plane of the same name.")
@click.pass_context
def add(ctx: click.Context, name_arg: str | None, name: str | None, address: str,
        token_file: str | None, token: str | None, ca_file: str | None,
        overwrite: bool) -> None:
    """Add a control plane NAME; the first one added becomes the current one."""
    if name_arg is not None and name is not None and name_arg != name:
        raise click.UsageError(f"two names given: {name_arg!r} and --name {name!r}")
    name = name or name_arg
    if name is None:
        raise click.UsageError("give the control plane a name: add NAME --address URL")
    if token_file is not None and token is not None:
        raise click.UsageError("--token-file and --token exclude each other")
    _check_ca_file(ca_file, address)
    token_file = os.path.abspath(token_file) if token_file else None
    ca_file = os.path.abspath(ca_file) if ca_file else None
    try:
        cp = ControlPlane(name=name, address=address, token_file=token_file, token=token,
                          ca_file=ca_file)
    except ConfigFieldError as exc:
        raise click.BadParameter(str(exc)) from None
    _warn_unless_file(token_file, "token file")
    _warn_unless_file(ca_file, "CA file")
    path = state(ctx).config_path
    cfg = load_config(path)
    if cfg.find(name) is not None and not overwrite:
        raise ConfigError(f"a control plane named {name!r} already exists in {path}; "
                          f"add --overwrite to replace it")
    new = cfg.with_control_plane(cp)
    save_config(path, new)
    click.echo(f"added control plane {name!r} ({cp.address})")
    if new.current_context == name and cfg.current_context != name:
        click.echo(f"switched to control plane {name!r}")


def _check_ca_file(ca_file: str | None, address: str) -> None:
    """Refuse a CA file that is there but holds no CA, now rather than at each command."""
    if ca_file is None:
        return
    if not address.startswith("https://"):
        raise click.UsageError("--ca-file applies to an https:// address only")
    if not os.path.isfile(ca_file):
        return
    try:
        ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise click.BadParameter(f"{ca_file} is not a PEM CA bundle ({reason})",
                                 param_hint="--ca-file") from None


@control_planes.command()
@click.argument("name")
@click.pass_context
def use(ctx: click.Context, name: str) -> None:
    """Make NAME the current control plane."""
    path = state(ctx).config_path
    cfg = load_config(path)
    if cfg.find(name) is None:
        raise ConfigError(f"no control plane named {name!r} in {path}")
    save_config(path, cfg.with_current(name))
    click.echo(f"switched to control plane {name!r}")


@control_planes.command("list")
@click.pass_context
def list_(ctx: click.Context) -> None:
    """List the control planes; * marks the current one."""
    cfg = load_config(state(ctx).config_path)
    if not cfg.control_planes:
        click.echo("No control planes configured; add one with "
                   "`gossamer config control-planes add`.", err=True)
        return
    rows = [["*" if cp.name == cfg.current_context else "", cp.name, cp.address]
            for cp in cfg.control_planes]
    click.echo(render_table(["CURRENT", "NAME", "ADDRESS"], rows))


@control_planes.command()
@click.argument("name")
@click.pass_context
def remove(ctx: click.Context, name: str) -> None:
    """Forget the control plane NAME."""
    path = state(ctx).config_path
    cfg = load_config(path)
    if cfg.find(name) is None:
        raise ConfigError(f"no control plane named {name!r} in {path}")
    new = cfg.without_control_plane(name)
    save_config(path, new)
    click.echo(f"removed control plane {name!r}")
    if new.current_context is None and new.control_planes:
        click.echo("no control plane is current now; pick one with "
                   "`gossamer config control-planes use NAME`", err=True)
