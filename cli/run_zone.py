"""``gossamer zone run``: start a zone control plane and block until a signal.

Standalone (no ``--global``) the zone is a single-zone mesh of its own. Federated, it
dials the global's zone sync at ``grpcs://HOST:PORT`` with a zone token, and must be told
how to trust the global: ``--global-ca`` or, knowingly, ``--insecure-skip-verify``.
Plaintext ``grpc://`` is refused outright: the zone token and the zone's certificate
signing requests would cross the network in clear, and "encrypted but unverified" is
already available for test setups.

``--global`` may name several addresses of the global (its replicas: repeated, comma- or
space-separated in ``GOSSAMER_GLOBAL_ADDRESS``, or one name with several address
records); the zone dials them in turn.

Everything is checked here, before the process starts, so a mistake is one line and
exit 2 rather than a zone that retries forever against the wrong place.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import click

from cli import params
from cli.api_options import api_options, api_settings
from cli.serve import serve
from gossamer.settings import DEFAULT_API_ADDR, DEFAULT_VIP_CIDR, DEFAULT_XDS_ADDR, ZoneSettings
from zone_cp.vips import parse_cidr

GLOBAL_EXAMPLE = "grpcs://global.example.com:5685"


def check_global_url(_: click.Context, __: click.Parameter, value: str | None) -> str | None:
    """``grpcs://HOST:PORT`` and nothing else (no path, query or credentials)."""
    if value is None:
        return None
    scheme, sep, _rest = value.partition("://")
    if sep and scheme.lower() == "grpc":
        raise click.BadParameter(
            f"{value!r}: plaintext grpc:// is not supported (the zone token would travel in "
            f"clear); use grpcs://, with --insecure-skip-verify for a test setup")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise click.BadParameter(f"{value!r}: {exc}") from None
    if (parts.scheme.lower() != "grpcs" or not parts.hostname or port is None or port == 0
            or parts.path.strip("/") or parts.query or parts.fragment or parts.username):
        raise click.BadParameter(f"{value!r}: expected grpcs://HOST:PORT, like {GLOBAL_EXAMPLE}")
    return f"grpcs://{parts.netloc}"


def check_global_urls(ctx: click.Context, param: click.Parameter,
                      values: tuple[str, ...]) -> tuple[str, ...]:
    """Each address of a repeated or comma-separated ``--global``, checked, once each."""
    urls: list[str] = []
    for value in values:
        for part in value.split(","):
            url = check_global_url(ctx, param, part.strip()) if part.strip() else None
            if url is not None and url not in urls:
                urls.append(url)
    if values and not urls:
        raise click.BadParameter(f"no address in {', '.join(map(repr, values))}; expected "
                                 f"grpcs://HOST:PORT, like {GLOBAL_EXAMPLE}")
    return tuple(urls)


def check_federation(global_url: str | None, token_file: Path | None, global_ca: Path | None,
                     insecure: bool) -> None:
    """The flags that belong together: all of them with --global, none without."""
    if global_url is None:
        given = [flag for flag, v in (("--token-file", token_file), ("--global-ca", global_ca),
                                      ("--insecure-skip-verify", insecure)) if v]
        if given:
            raise click.UsageError(f"{', '.join(given)} only apply with --global "
                                   f"(without it the zone runs standalone)")
        return
    if global_ca is not None and insecure:
        raise click.UsageError("--global-ca and --insecure-skip-verify exclude each other")
    missing = []
    if token_file is None:
        missing.append("--token-file FILE (a zone token issued at the global with "
                       "`gossamer token zone --zone NAME`)")
    if global_ca is None and not insecure:
        missing.append("--global-ca FILE (the global's CA certificate, to verify it) or, "
                       "in a test setup, --insecure-skip-verify")
    if missing:
        raise click.UsageError("--global needs " + " and ".join(missing))


def check_vip_cidr(_: click.Context, __: click.Parameter, value: str) -> str:
    """A network with at least one usable address, in its canonical form."""
    try:
        return str(parse_cidr(value))
    except ValueError as exc:
        raise click.BadParameter(f"{value!r}: {exc}") from None


_FILE = click.Path(dir_okay=False, path_type=Path)


@click.command()
@click.option("--zone", required=True, envvar="GOSSAMER_ZONE", show_envvar=True,
              callback=params.name("zone"), help="The zone's name, unique in the federation.")
@click.option("--data-dir", envvar="GOSSAMER_DATA_DIR", show_envvar=True, default=None,
              type=click.Path(file_okay=False, path_type=Path),
              help="State: the SQLite store, admin-token (0600) and TLS material "
                   "[default: .gossamer/zone-NAME].")
@params.api_addr_option(DEFAULT_API_ADDR)
@click.option("--xds-addr", envvar="GOSSAMER_XDS_ADDR", show_envvar=True,
              default=DEFAULT_XDS_ADDR, show_default=True, metavar="HOST:PORT",
              callback=params.addr,
              help="HOST:PORT of the xDS server and agent API for sidecars (gRPC over TLS).")
@params.store_option
@click.option("--global", "global_urls", envvar="GOSSAMER_GLOBAL_ADDRESS", show_envvar=True,
              multiple=True, callback=check_global_urls, metavar="grpcs://HOST:PORT",
              help="Federate with the global control plane at this address. TLS only: "
                   "plaintext grpc:// is refused. Without it the zone is standalone. "
                   "Several addresses (the global's replicas: repeated or comma-separated) "
                   "are dialled in turn; a broken stream moves to the next.")
@click.option("--token-file", envvar="GOSSAMER_ZONE_TOKEN_FILE", show_envvar=True,
              default=None, type=_FILE, callback=params.token_file,
              help="The zone token (from `gossamer token zone` at the global); with --global.")
@click.option("--global-ca", envvar="GOSSAMER_GLOBAL_CA", show_envvar=True, default=None,
              type=_FILE, callback=params.ca_file,
              help="The global's CA certificate (its DATA_DIR/tls/ca.pem), to verify it with.")
@click.option("--insecure-skip-verify", envvar="GOSSAMER_INSECURE_SKIP_VERIFY",
              show_envvar=True, is_flag=True,
              help="Connect to the global over TLS without verifying its certificate "
                   "(test setups only).")
@click.option("--vip-cidr", envvar="GOSSAMER_VIP_CIDR", show_envvar=True,
              default=DEFAULT_VIP_CIDR, show_default=True, metavar="CIDR",
              callback=check_vip_cidr,
              help="The range the zone allocates its services' virtual IPs from: what "
                   "<service>.mesh resolves to. Sidecars route it to lo.")
@click.option("--tls-host", "tls_hosts", multiple=True, envvar="GOSSAMER_TLS_HOSTS",
              show_envvar=True, metavar="HOST", callback=params.hosts,
              help="A name or IP sidecars and ingresses reach the xDS port (and clients a "
                   "TLS API) by, added to its certificate beside localhost, this host's "
                   "name, 127.0.0.1, ::1 and the API's address. Repeatable.")
@click.option("--agent-grace", envvar="GOSSAMER_AGENT_GRACE", show_envvar=True,
              default="60s", show_default=True, metavar="DURATION",
              callback=params.duration(1.0, seconds=True),
              help="After a restart, how long the sidecars and ingresses a previous run "
                   "registered stay in the mesh waiting for their agents to come back.")
@api_options
@params.heartbeat_options
@params.log_level_option
@params.leader_lease_option
def run(zone: str, data_dir: Path | None, api_addr: str, xds_addr: str, store: str,
        global_urls: tuple[str, ...], token_file: Path | None, global_ca: Path | None,
        insecure_skip_verify: bool, vip_cidr: str, tls_hosts: tuple[str, ...],
        agent_grace: float, api_max_body: int, api_tls: bool, api_tls_cert: Path | None,
        api_tls_key: Path | None, heartbeat_interval: float,
        heartbeat_timeout: float, log_level: str, leader_lease: float) -> None:
    """Run a zone control plane (blocks; stop it with Ctrl-C or SIGTERM).

    Without --global it is a standalone single-zone mesh; with --global grpcs://HOST:5685
    --token-file F and --global-ca F (or --insecure-skip-verify) it joins a federation.
    """
    global_url = global_urls[0] if global_urls else None
    check_federation(global_url, token_file, global_ca, insecure_skip_verify)
    params.check_heartbeats(heartbeat_interval, heartbeat_timeout)
    settings = ZoneSettings(zone=zone, data_dir=data_dir, api_addr=api_addr, xds_addr=xds_addr,
                            store=store, global_url=global_url,
                            global_alternates=global_urls[1:], token_file=token_file,
                            global_ca=global_ca, insecure_skip_verify=insecure_skip_verify,
                            heartbeat_interval=heartbeat_interval,
                            heartbeat_timeout=heartbeat_timeout, vip_cidr=vip_cidr,
                            tls_hosts=tls_hosts, agent_grace=agent_grace,
                            api=api_settings(api_max_body, api_tls, api_tls_cert, api_tls_key),
                            leader_lease=leader_lease)

    def start() -> None:
        # Lazy on purpose: the zone CP (FastAPI, gRPC, xDS, the stores) takes about half a
        # second to import, which every other `gossamer` command would pay at its start.
        from zone_cp.app import serve_forever

        serve_forever(settings)

    serve(log_level, start)
