"""``gossamer proxy run``: the sidecar agent (``proxy.agent``) as a command.

Every input is checked before anything starts — the Dataplane file is templated and
validated, the token and CA files read, the Envoy binary found — so a mistake is a clear
message and exit 2. Then the agent registers with the zone CP, gets its certificate,
serves it to Envoy over SDS and runs Envoy until SIGINT/SIGTERM (drain, exit 0). A
refusal by the control plane (a wrong token) or an Envoy that cannot start ends in one
``error:`` line (plus the tail of Envoy's log) and exit 1; never a traceback.

The options it shares with ``ingress run`` are ``cli.agent_options``; its own are the
Dataplane file, MeshMetric TLS and the resolver's address. The run body and the error
report are ``cli.agent_process``.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cli import params
from cli.agent_options import (
    FILE,
    AgentKind,
    AgentOptions,
    agent_command,
    control_plane_options,
    envoy_options,
)
from cli.agent_process import reported, setup_logging
from gossamer.settings import split_addr
from proxy.agent import dataplane_file, transparent
from proxy.agent.errors import InputError
from proxy.redirect.defaults import SIDECAR_USER

DEFAULT_VIP_CIDR = "240.0.0.0/4"  # zone_cp's default --vip-cidr

if TYPE_CHECKING:
    from proxy.agent.sidecar_settings import AgentSettings

DEFAULT_ADMIN_PORT = 9901
DEFAULT_DNS_ADDR = "127.0.0.1:15053"


def read_token(path: Path) -> str:
    """The dataplane token: a JWT (three dot-separated parts) alone in the file."""
    # Lazy like the agent's other runtime imports (see build_settings).
    from proxy.agent import token_file

    return token_file.read(path, token_file.DATAPLANE_TOKEN)


def read_metrics_tls(cert: Path | None, key: Path | None) -> tuple[bytes, bytes] | None:
    """The operator's certificate and key for a MeshMetric endpoint in ``ProvidedTLS``
    mode: both or neither, and the key must be the certificate's."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise InputError("--metrics-cert-file and --metrics-key-file go together")
    # Here only: cryptography is for this check, not for every `proxy run`.
    from gossamer.pki.certs import KeyPair
    from proxy.agent.keygen import matches

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


def vip_cidr(_: click.Context, __: click.Parameter, value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an IP network (e.g. 240.0.0.0/4)") \
            from None


def dns_addr(_: click.Context, __: click.Parameter, value: str) -> tuple[str, int]:
    """``IP:PORT`` for the resolver: an address literal (we bind it), port 0 for any."""
    try:
        host, port = split_addr(value)
        ipaddress.ip_address(host)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r}: {exc}; expected IP:PORT, like "
                                 f"{DEFAULT_DNS_ADDR}") from None
    return host, port


@dataclass(frozen=True, kw_only=True)
class ProxyOptions:
    """``proxy run``'s options as given: the shared ones and the sidecar's own."""

    agent: AgentOptions
    dataplane: Path
    dataplane_vars: tuple[str, ...]
    metrics_cert_file: Path | None
    metrics_key_file: Path | None
    dns_addr: tuple[str, int]
    transparent: bool = False
    run_as: str = SIDECAR_USER
    vip_cidr: str = DEFAULT_VIP_CIDR
    vip_route: bool = False


def build_settings(options: ProxyOptions) -> AgentSettings:
    """The sidecar agent's settings; an ``InputError`` names the first bad input."""
    # Lazy on purpose: the agent's runtime (gRPC and its protobufs, Envoy's API, c-ares)
    # would load at the start of every `gossamer` command, which imports this module.
    from dns.server import ServerConfig
    from proxy.agent.sidecar_settings import AgentSettings
    from proxy.agent.vip_route import VipRoute

    metrics_tls = read_metrics_tls(options.metrics_cert_file, options.metrics_key_file)
    agent = options.agent
    address = agent.addresses()[0]
    loaded = dataplane_file.load(options.dataplane,
                                 dataplane_file.parse_vars(options.dataplane_vars))
    for name in loaded.unused_vars:
        logging.getLogger(__name__).warning(
            "--dataplane-var %s is not used by %s", name, options.dataplane)
    if options.transparent:
        loaded = transparent.with_capture(loaded)
    token = read_token(agent.token_file)
    host, port = options.dns_addr
    return agent.settings(
        AgentSettings, address, token=token,
        work_dir=agent.work_dir or Path(f".gossamer/proxy-{loaded.name}"),
        admin_port=agent.admin_port or loaded.admin_port or DEFAULT_ADMIN_PORT,
        dataplane=loaded, metrics_tls=metrics_tls, dns=ServerConfig(host=host, port=port),
        vip=VipRoute(cidr=options.vip_cidr, add_route=options.vip_route))


PROXY = AgentKind(
    token_envvar="GOSSAMER_DATAPLANE_TOKEN_FILE",
    token_help="The dataplane token (from `gossamer token dataplane`).",
    token_check=None,  # read_token reads it, with a message of its own
    work_dir_envvar="GOSSAMER_PROXY_WORK_DIR",
    work_dir_help="Envoy's bootstrap, log and the SDS socket [default: .gossamer/proxy-NAME].",
    admin_port_default=None,
    admin_port_help="Envoy's admin port on 127.0.0.1 [default: the Dataplane's "
                    "networking.admin.port, else 9901].")


@agent_command(ProxyOptions)
@click.option("--dataplane", "dataplane", required=True, type=FILE,
              envvar="GOSSAMER_DATAPLANE_FILE", show_envvar=True,
              help="The Dataplane YAML file; {{ name }} placeholders are filled from "
                   "--dataplane-var.")
@click.option("--dataplane-var", "dataplane_vars", multiple=True, metavar="NAME=VALUE",
              help="A value for a {{ NAME }} placeholder of the Dataplane file (repeatable).")
@control_plane_options(PROXY)
@envoy_options(PROXY)
@click.option("--metrics-cert-file", type=FILE, default=None,
              help="Certificate (PEM chain) of the MeshMetric Prometheus endpoint when its "
                   "tls.mode is ProvidedTLS; with --metrics-key-file.")
@click.option("--metrics-key-file", type=FILE, default=None,
              help="The private key of --metrics-cert-file.")
@click.option("--dns-addr", envvar="GOSSAMER_DNS_ADDR", show_envvar=True,
              default=DEFAULT_DNS_ADDR, show_default=True, metavar="IP:PORT",
              callback=dns_addr,
              help="Where the sidecar's DNS resolver listens (UDP and TCP): it answers "
                   "<service>.mesh with the service's virtual IP and forwards other names "
                   "to /etc/resolv.conf's servers. 127.0.0.1:53 in a namespace of its own.")
@click.option("--transparent", is_flag=True, envvar="GOSSAMER_TRANSPARENT",
              show_envvar=True,
              help="The workload's traffic is redirected to this sidecar (`gossamer proxy "
                   "redirect install`): ask the zone CP for the capture listeners "
                   "(outbound 127.0.0.1:15001, inbound 0.0.0.0:15006) and, started as "
                   "root, run as --run-as with CAP_NET_BIND_SERVICE only.")
@click.option("--run-as", default=SIDECAR_USER, show_default=True, metavar="USER",
              envvar="GOSSAMER_RUN_AS", show_envvar=True,
              help="With --transparent, started as root: the user the sidecar runs as, the "
                   "one the redirect lets pass (its --exclude-uid).")
@click.option("--vip-cidr", envvar="GOSSAMER_VIP_CIDR", show_envvar=True,
              default=DEFAULT_VIP_CIDR, show_default=True, callback=vip_cidr,
              help="The zone CP's --vip-cidr: the range the VIP listeners bind. Unless it "
                   "is routed to lo here, the agent turns them off and logs the command "
                   "that routes it.")
@click.option("--vip-route", is_flag=True, envvar="GOSSAMER_VIP_ROUTE", show_envvar=True,
              help="Route --vip-cidr to lo in this network namespace when it is not "
                   "(`ip route replace local CIDR dev lo`; needs CAP_NET_ADMIN, e.g. root "
                   "in the workload's namespace).")
@params.log_level_option
def run(options: ProxyOptions) -> None:
    """Run a sidecar: register the Dataplane, get its certificate, run Envoy (blocks).

    Stop it with Ctrl-C or SIGTERM: Envoy drains its connections first. The token file
    is read again before the token expires, on SIGHUP and whenever the agent reconnects:
    write a new token into it and the agent and Envoy move to it without a restart.
    """
    # Checked here, run in a fresh interpreter that loads only the agent's runtime.
    from cli.agent_runtime import exec_runtime

    setup_logging(options.agent.log_level)
    exec_runtime(options.agent.log_level, reported(lambda: _as_sidecar_user(options)))


def _as_sidecar_user(options: ProxyOptions) -> AgentSettings:
    """The settings; with --transparent as root, the command runs again as --run-as
    first (``proxy.agent.transparent``), so nothing the sidecar sends is captured."""
    settings = build_settings(options)
    if options.transparent and os.geteuid() == 0:
        user = transparent.lookup(options.run_as)
        transparent.become(user, settings.work_dir, [sys.executable, *sys.orig_argv[1:]])
    elif options.transparent:
        transparent.note_user()
    return settings
