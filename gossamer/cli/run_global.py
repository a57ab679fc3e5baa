"""``gossamer global run``: start the global control plane and block until a signal.

A thin entry point (STYLE habit 10): it turns flags and ``GOSSAMER_*`` variables into one
``GlobalSettings``, sets up logging and hands over to ``global_cp.app.serve_forever``.
The import is lazy so that client commands never load the server's dependencies.
"""

from __future__ import annotations

import logging
from pathlib import Path

import click

from gossamer.settings import DEFAULT_API_ADDR, DEFAULT_SYNC_ADDR, GlobalSettings, split_addr

LOG_LEVELS = ("debug", "info", "warning", "error")
_STORE_PREFIXES = ("sqlite://", "postgres://", "postgresql://")


def _addr(_: click.Context, param: click.Parameter, value: str) -> str:
    try:
        split_addr(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


def _store(_: click.Context, __: click.Parameter, value: str) -> str:
    if value in ("sqlite", "memory") or value.startswith(_STORE_PREFIXES):
        return value
    raise click.BadParameter("expected sqlite, memory, sqlite:///PATH or postgres://...")


@click.command()
@click.option("--data-dir", envvar="GOSSAMER_DATA_DIR", default=".gossamer/global",
              show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="State: the SQLite store, admin-token (0600) and TLS material.")
@click.option("--api-addr", envvar="GOSSAMER_API_ADDR", default=DEFAULT_API_ADDR,
              show_default=True, callback=_addr, help="HOST:PORT of the HTTP API and GUI.")
@click.option("--sync-addr", envvar="GOSSAMER_SYNC_ADDR", default=DEFAULT_SYNC_ADDR,
              show_default=True, callback=_addr, help="HOST:PORT of the zone sync (gRPC).")
@click.option("--store", envvar="GOSSAMER_STORE", default="sqlite", show_default=True,
              callback=_store,
              help="sqlite (a file in --data-dir), memory, sqlite:///PATH or postgres://URL.")
@click.option("--log-level", envvar="GOSSAMER_LOG_LEVEL", default="info", show_default=True,
              type=click.Choice(LOG_LEVELS, case_sensitive=False))
def run(data_dir: Path, api_addr: str, sync_addr: str, store: str, log_level: str) -> None:
    """Run the global control plane (blocks; stop it with Ctrl-C or SIGTERM)."""
    logging.basicConfig(level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from global_cp.app import serve_forever

    serve_forever(GlobalSettings(data_dir=data_dir, api_addr=api_addr, sync_addr=sync_addr,
                                 store=store))
