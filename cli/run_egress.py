"""``gossamer egress run``: the zone egress (``zone_egress``) as a command.

Like ``ingress run`` (``cli.run_ingress``, whose helpers it shares): every input is
checked first (one ``error:`` line and exit 2), then the agent registers the ZoneEgress,
gets its certificate in each ``--mesh`` and runs Envoy until SIGINT/SIGTERM. A refusal
by the control plane (a token without the ``egress`` scope, a standalone zone, a mesh
the CP does not know) is one ``error:`` line and exit 1.

Defaults a person should know about:

- ``--name``: ``<zone>-egress``, the zone read from the zone token's subject.
- ``--mesh``: ``default``; repeat it for each mesh whose sidecars go through this egress.
- ``--advertise``: where the zone's sidecars dial the egress; for a wildcard listen, the
  local address toward the control plane, with the listen port.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cli import params
from cli.agent_options import (
    AgentKind,
    AgentOptions,
    agent_command,
    control_plane_options,
    envoy_options,
)
from cli.agent_process import reported, setup_logging
from cli.run_ingress import _host_port, advertised, zone_of

if TYPE_CHECKING:
    from zone_egress.agent import EgressSettings

DEFAULT_LISTEN = "0.0.0.0:10002"
DEFAULT_ADMIN_PORT = 9902
log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class EgressOptions:
    """``egress run``'s options as given: the shared ones and the egress's own."""

    agent: AgentOptions
    name: str | None
    listen: tuple[str, int]
    advertise: tuple[str, int] | None
    meshes: tuple[str, ...]


def build_settings(options: EgressOptions) -> EgressSettings:
    """The zone egress's settings; an ``InputError`` names the first bad input."""
    # Lazy, as in ``cli.run_ingress``: the agent's runtime stays out of every command.
    from proxy.agent import token_file as tokens
    from zone_egress.agent import EgressSettings

    agent = options.agent
    address = agent.addresses()[0]
    token = tokens.read(agent.token_file, tokens.EGRESS_TOKEN)
    name = options.name or f"{zone_of(token)}-egress"
    host, port = options.listen
    advertise = advertised(options.listen, options.advertise, address, "the zone's sidecars")
    return agent.settings(
        EgressSettings,
        address,
        token=token,
        work_dir=agent.work_dir or Path(f".gossamer/{name}"),
        admin_port=agent.admin_port or DEFAULT_ADMIN_PORT,
        name=name,
        address=host,
        port=port,
        advertised=advertise,
        meshes=tuple(dict.fromkeys(options.meshes or ("default",))),
    )


EGRESS = AgentKind(
    token_envvar="GOSSAMER_EGRESS_TOKEN_FILE",
    token_help="A zone token with the egress scope (from `gossamer token zone` at the global).",
    token_check=params.token_file,
    work_dir_envvar="GOSSAMER_EGRESS_WORK_DIR",
    work_dir_help="Envoy's bootstrap and log, the SDS socket [default: .gossamer/NAME].",
    admin_port_default=DEFAULT_ADMIN_PORT,
    admin_port_help="Envoy's admin port on 127.0.0.1.",
)


@agent_command(EgressOptions)
@control_plane_options(EGRESS)
@click.option(
    "--name",
    default=None,
    callback=params.name("egress name"),
    envvar="GOSSAMER_EGRESS_NAME",
    show_envvar=True,
    help="The ZoneEgress's name [default: <zone>-egress].",
)
@click.option(
    "--listen",
    default=DEFAULT_LISTEN,
    show_default=True,
    metavar="HOST:PORT",
    callback=_host_port,
    envvar="GOSSAMER_EGRESS_LISTEN",
    show_envvar=True,
    help="Where Envoy accepts the zone's sidecars' mTLS.",
)
@click.option(
    "--advertise",
    default=None,
    metavar="HOST:PORT",
    callback=_host_port,
    envvar="GOSSAMER_EGRESS_ADVERTISE",
    show_envvar=True,
    help="Where the zone's sidecars dial this egress [default: the listen "
    "address, or for a wildcard listen the local address toward the "
    "control plane].",
)
@click.option(
    "--mesh",
    "meshes",
    multiple=True,
    callback=params.names("mesh"),
    metavar="MESH",
    help="A mesh whose sidecars go through this egress; repeatable  [default: default]",
)
@envoy_options(EGRESS)
@params.log_level_option
def run(options: EgressOptions) -> None:
    """Run a zone egress: the zone's traffic to external services leaves through it
    (blocks).

    It holds a certificate of its own per mesh (never a workload's), checks
    MeshTrafficPermission by the caller's certificate and originates TLS to external
    services. Stop it with Ctrl-C or SIGTERM: Envoy drains its connections first.
    """
    from cli.agent_runtime import EGRESS as RUNTIME
    from cli.agent_runtime import exec_runtime

    setup_logging(options.agent.log_level)
    settings = reported(lambda: build_settings(options).checked())
    exec_runtime(options.agent.log_level, settings, RUNTIME)
