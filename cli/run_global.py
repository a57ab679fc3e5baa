"""``gossamer global run``: start the global control plane and block until a signal.

A thin entry point (STYLE habit 10): it turns flags and ``GOSSAMER_*`` variables into one
``GlobalSettings`` and hands over to ``global_cp.app.serve_forever`` through
``cli.serve``. The options it shares with ``zone run`` come from
``cli.params``.
"""

from __future__ import annotations

from pathlib import Path

import click

from cli import params
from cli.api_options import api_options, api_settings
from cli.serve import serve
from gossamer.settings import DEFAULT_API_ADDR, DEFAULT_SYNC_ADDR, GlobalSettings


@click.command()
@click.option("--data-dir", envvar="GOSSAMER_DATA_DIR", show_envvar=True,
              default=".gossamer/global", show_default=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="State: the SQLite store, admin-token (0600) and TLS material.")
@params.api_addr_option(DEFAULT_API_ADDR)
@click.option("--sync-addr", envvar="GOSSAMER_SYNC_ADDR", show_envvar=True,
              default=DEFAULT_SYNC_ADDR, show_default=True, metavar="HOST:PORT",
              callback=params.addr,
              help="HOST:PORT of the zone sync (gRPC over TLS).")
@click.option("--tls-host", "tls_hosts", multiple=True, envvar="GOSSAMER_TLS_HOSTS",
              show_envvar=True, metavar="HOST", callback=params.hosts,
              help="A name or IP zones reach the zone sync (and a TLS API) by, added to "
                   "its certificate beside localhost, this host's name, 127.0.0.1, ::1 and "
                   "the API's address. Repeatable.")
@params.store_option
@params.leader_lease_option
@api_options
@params.heartbeat_options
@params.log_level_option
def run(data_dir: Path, api_addr: str, sync_addr: str, tls_hosts: tuple[str, ...], store: str,
        api_max_body: int, api_tls: bool, api_tls_cert: Path | None, api_tls_key: Path | None,
        heartbeat_interval: float, heartbeat_timeout: float, log_level: str,
        leader_lease: float) -> None:
    """Run the global control plane (blocks; stop it with Ctrl-C or SIGTERM).

    At first start it writes DATA_DIR/admin-token (the API's admin token) and
    DATA_DIR/tls/ca.pem (what zones pass as --global-ca, and the CLI as --ca-file when
    the API speaks TLS: always when --api-addr is not a loopback address).
    """
    params.check_heartbeats(heartbeat_interval, heartbeat_timeout)
    settings = GlobalSettings(data_dir=data_dir, api_addr=api_addr, sync_addr=sync_addr,
                              store=store, tls_hosts=tls_hosts,
                              api=api_settings(api_max_body, api_tls, api_tls_cert, api_tls_key),
                              heartbeat_interval=heartbeat_interval,
                              heartbeat_timeout=heartbeat_timeout,
                              leader_lease=leader_lease)

    def start() -> None:
        # Lazy on purpose: the global CP (FastAPI, gRPC, the stores) takes about half a
        # second to import, which every other `gossamer` command would pay at its start.
        from global_cp.app import serve_forever

        serve_forever(settings)

    serve(log_level, start)
