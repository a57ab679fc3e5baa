"""The HTTP API's guard options, shared by ``global run`` and ``zone run``.

``--api-max-body`` bounds request bodies; ``--api-tls``, ``--api-tls-cert`` and
``--api-tls-key`` choose how the API speaks TLS (DESIGN §5: always beyond loopback).
Each value is checked here, so a mistake is one line and exit 2 before anything starts;
``api_settings`` then builds the one ``ApiSettings`` the control plane is given.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from gossamer.settings import (
    DEFAULT_API_MAX_BODY,
    MAX_API_MAX_BODY,
    MIN_API_MAX_BODY,
    ApiSettings,
    parse_byte_size,
)

F = Callable[..., Any]
_FILE = click.Path(dir_okay=False, path_type=Path)


def _max_body(_: click.Context, __: click.Parameter, value: str) -> int:
    try:
        size = parse_byte_size(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if not MIN_API_MAX_BODY <= size <= MAX_API_MAX_BODY:
        raise click.BadParameter(f"{value!r}: the limit must be between 1KiB and 1GiB")
    return size


def _readable(_: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    if value is None:
        return None
    try:
        with open(value, "rb") as f:
            f.read(1)
    except OSError as exc:
        raise click.BadParameter(f"cannot read {value}: {exc.strerror or exc}") from None
    return value


def api_options(f: F) -> F:
    """The four options, in the order ``--help`` shows them."""
    f = click.option("--api-tls-key", envvar="GOSSAMER_API_TLS_KEY", show_envvar=True,
                     default=None, type=_FILE, callback=_readable,
                     help="The private key (PEM) of --api-tls-cert.")(f)
    f = click.option("--api-tls-cert", envvar="GOSSAMER_API_TLS_CERT", show_envvar=True,
                     default=None, type=_FILE, callback=_readable,
                     help="A certificate (PEM, with its chain) for the API instead of one "
                          "signed by DATA_DIR/tls/ca.pem; implies TLS.")(f)
    f = click.option("--api-tls", envvar="GOSSAMER_API_TLS", show_envvar=True, is_flag=True,
                     help="Serve the API over TLS on a loopback address too (it always does "
                          "beyond loopback).")(f)
    return click.option("--api-max-body", envvar="GOSSAMER_API_MAX_BODY", show_envvar=True,
                        default=f"{DEFAULT_API_MAX_BODY >> 20}MiB", show_default=True,
                        metavar="SIZE", callback=_max_body,
                        help="The largest request body the API accepts (413 beyond it), "
                             "like 8MiB or 512KiB.")(f)


def api_settings(max_body: int, tls: bool, cert: Path | None, key: Path | None) -> ApiSettings:
    """The settings, once the certificate and key are known to be a pair."""
    if (cert is None) != (key is None):
        raise click.UsageError("--api-tls-cert and --api-tls-key go together")
    if cert is not None and key is not None:
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise click.UsageError(f"--api-tls-cert {cert} and --api-tls-key {key} are not a "
                                   f"PEM certificate and its key ({reason})") from None
    return ApiSettings(max_body=max_body, tls=tls, tls_cert=cert, tls_key=key)
