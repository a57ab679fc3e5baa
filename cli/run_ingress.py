"""``gossamer ingress run``: the zone ingress (``zone_ingress``) as a command.

Every input is checked before anything starts (the addresses, the token and CA files,
the Envoy binary), so a mistake is one ``error:`` line and exit 2. Then the agent
registers the ZoneIngress with the zone CP and runs Envoy until SIGINT/SIGTERM (drain,
exit 0). A refusal by the control plane (a token without the ``ingress`` scope, a
dataplane token, a standalone zone) or an Envoy that cannot start is one ``error:`` line
and exit 1; never a traceback.

The options it shares with ``proxy run`` are ``cli.agent_options``, the run body and
the error report ``cli.agent_process``.

Defaults a person should know about:

- ``--name``: ``<zone>-ingress``, the zone read from the zone token's subject (the
  control plane verifies the token; this only names the ingress). Pass ``--name`` to run
  more than one ingress in a zone.
- ``--advertise``: where other zones dial this ingress. Without it an ingress listening
  on one address is dialled there, and one listening on every address (``0.0.0.0``,
  the default) advertises the local address it uses toward the control plane, with the
  listen port. Behind NAT or a load balancer pass the outside ``HOST:PORT``.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click
import jwt

from cli import params
from cli.agent_options import (
    AgentKind,
    AgentOptions,
    agent_command,
    control_plane_options,
    envoy_options,
)
from cli.agent_process import reported, setup_logging
from gossamer.settings import split_addr
from proxy.agent.errors import InputError

if TYPE_CHECKING:
    from proxy.agent.cp_client import ControlPlaneAddress
    from zone_ingress.agent import IngressSettings

DEFAULT_LISTEN = "0.0.0.0:10001"
DEFAULT_ADMIN_PORT = 9901
log = logging.getLogger(__name__)


def _host_port(_: click.Context, param: click.Parameter, value: str | None
               ) -> tuple[str, int] | None:
    if value is None:
        return None
    try:
        host, port = split_addr(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if not 0 < port <= 65535:
        raise click.BadParameter(f"{value!r}: the port must be between 1 and 65535")
    if param.name == "advertise" and _is_wildcard(host):
        raise click.BadParameter(f"{value!r}: other zones cannot dial a wildcard address")
    return host, port


def _is_wildcard(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def zone_of(token: str) -> str:
    """The subject of a zone token, unverified (only to name the ingress by default)."""
    try:
        subject = jwt.decode(token, options={"verify_signature": False}).get("sub")
    except jwt.PyJWTError:
        subject = None
    if not isinstance(subject, str) or not subject:
        raise InputError("the token names no zone: pass --name")
    return subject


def outward_address(cp: ControlPlaneAddress) -> str:
    """The local address this host uses toward the control plane (no packet is sent)."""
    try:
        family, _, _, _, target = socket.getaddrinfo(cp.host, cp.port,
                                                     type=socket.SOCK_DGRAM)[0]
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect(target)
            return str(probe.getsockname()[0])
    except OSError as exc:
        raise InputError(f"cannot tell which address other zones reach this ingress at "
                         f"({exc.strerror or exc}): pass --advertise HOST:PORT") from None


@dataclass(frozen=True, kw_only=True)
class IngressOptions:
    """``ingress run``'s options as given: the shared ones and the ingress's own."""

    agent: AgentOptions
    name: str | None
    listen: tuple[str, int]
    advertise: tuple[str, int] | None


def advertised(listen: tuple[str, int], advertise: tuple[str, int] | None,
               cp: ControlPlaneAddress, audience: str) -> tuple[str, int] | None:
    """Where ``audience`` dials a zone proxy: ``advertise``, or when it listens on every
    address, this host's address towards the zone CP ``cp`` on the listen port."""
    host, port = listen
    if advertise is None and _is_wildcard(host):
        advertise = (outward_address(cp), port)
        log.info("advertising %s:%d to %s (pass --advertise to change it)",
                 *advertise, audience)
    return advertise


def build_settings(options: IngressOptions) -> IngressSettings:
    """The zone ingress's settings; an ``InputError`` names the first bad input."""
    # Lazy on purpose: the agent's runtime (gRPC and its protobufs, Envoy's API) would
    # load at the start of every `gossamer` command, which imports this module.
    # Lazy like the imports above.
    from proxy.agent import token_file as tokens
    from zone_ingress.agent import IngressSettings

    agent = options.agent
    address = agent.addresses()[0]
    token = tokens.read(agent.token_file, tokens.INGRESS_TOKEN)
    name = options.name or f"{zone_of(token)}-ingress"
    host, port = options.listen
    advertise = advertised(options.listen, options.advertise, address, "other zones")
    return agent.settings(
        IngressSettings, address, token=token,
        work_dir=agent.work_dir or Path(f".gossamer/{name}"),
        admin_port=agent.admin_port or DEFAULT_ADMIN_PORT,
        name=name, address=host, port=port, advertised=advertise)


INGRESS = AgentKind(
    token_envvar="GOSSAMER_INGRESS_TOKEN_FILE",
    token_help="A zone token with the ingress scope (from `gossamer token zone` at the "
               "global).",
    token_check=params.token_file,
    work_dir_envvar="GOSSAMER_INGRESS_WORK_DIR",
    work_dir_help="Envoy's bootstrap and log [default: .gossamer/NAME].",
    admin_port_default=DEFAULT_ADMIN_PORT,
    admin_port_help="Envoy's admin port on 127.0.0.1.")


@agent_command(IngressOptions)
@control_plane_options(INGRESS)
@click.option("--name", default=None, callback=params.name("ingress name"),
              envvar="GOSSAMER_INGRESS_NAME", show_envvar=True,
              help="The ZoneIngress's name [default: <zone>-ingress].")
@click.option("--listen", default=DEFAULT_LISTEN, show_default=True, metavar="HOST:PORT",
              callback=_host_port, envvar="GOSSAMER_INGRESS_LISTEN", show_envvar=True,
              help="Where Envoy accepts other zones' TLS.")
@click.option("--advertise", default=None, metavar="HOST:PORT", callback=_host_port,
              envvar="GOSSAMER_INGRESS_ADVERTISE", show_envvar=True,
              help="Where other zones dial this ingress (NAT, a load balancer; a hostname "
                   "is allowed) [default: the listen address, or for a wildcard listen "
                   "the local address toward the control plane].")
@envoy_options(INGRESS)
@params.log_level_option
def run(options: IngressOptions) -> None:
    """Run a zone ingress: other zones reach this zone's services through it (blocks).

    It routes by the TLS SNI and never decrypts: it holds no workload key. Stop it with
    Ctrl-C or SIGTERM: Envoy drains its connections first.
    """
    # Checked here, run in a fresh interpreter that loads only the agent's runtime.
    from cli.agent_runtime import INGRESS, exec_runtime

    setup_logging(options.agent.log_level)
    settings = reported(lambda: build_settings(options).checked())
    exec_runtime(options.agent.log_level, settings, INGRESS)
