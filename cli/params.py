"""Option checks shared by the commands: addresses, stores, durations, names, files.

Each check is a click callback that turns a bad value into a ``BadParameter`` (one line,
exit 2) before anything starts or is sent. Durations and names follow the same rules as
resource fields on the server (``gossamer.model.fields``), so the CLI never accepts what
the control plane would refuse, nor refuses what it would accept.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from pydantic import TypeAdapter, ValidationError

from gossamer.model.address import Address
from gossamer.model.base import check_name
from gossamer.model.fields import Duration, duration_seconds
from gossamer.settings import split_addr

LOG_LEVELS = ("debug", "info", "warning", "error")
STORE_PREFIXES = ("sqlite://", "postgres://", "postgresql://")
MAX_TOKEN_FILE_BYTES = 64 << 10

Callback = Callable[[click.Context, click.Parameter, Any], Any]

_DURATION: TypeAdapter[str] = TypeAdapter(Duration)
_ADDRESS: TypeAdapter[str] = TypeAdapter(Address)


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration (``"5s"``, ``"1h30m"``); ``ValueError`` if invalid."""
    try:
        valid = _DURATION.validate_python(text)
    except ValidationError as exc:
        raise ValueError(exc.errors()[0]["msg"]) from None
    return duration_seconds(valid)


def duration(minimum: float, *, seconds: bool = False) -> Callback:
    """A duration of at least ``minimum`` seconds, as its text or (``seconds``) a float."""

    def check(_: click.Context, __: click.Parameter, value: str | None) -> str | float | None:
        if value is None:
            return None
        try:
            secs = parse_duration(value)
        except ValueError as exc:
            raise click.BadParameter(f"{value!r}: {exc}") from None
        if secs < minimum:
            raise click.BadParameter(f"{value!r} is shorter than {_show(minimum)}")
        return secs if seconds else value

    return check


def _show(secs: float) -> str:
    return f"{secs:g}s" if secs >= 1 else f"{secs * 1000:g}ms"


def name(what: str) -> Callback:
    """A resource name (lower-case letters, digits, '-' and '.')."""

    def check(_: click.Context, __: click.Parameter, value: str | None) -> str | None:
        if value is None:
            return None
        errors = check_name(value, what)
        if errors:
            raise click.BadParameter(f"{value!r}: {errors[0].message}")
        return value

    return check


def names(what: str) -> Callable[[click.Context, click.Parameter, tuple[str, ...]],
                                  tuple[str, ...]]:
    """A repeatable option of resource names, each checked like ``name``."""
    one = name(what)

    def check(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]
              ) -> tuple[str, ...]:
        return tuple(str(one(ctx, param, v)) for v in value)

    return check


def addr(_: click.Context, __: click.Parameter, value: str) -> str:
    try:
        split_addr(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


def hosts(_: click.Context, __: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    """IP addresses or DNS names (a repeated option, or a space-separated variable)."""
    for host in value:
        try:
            _ADDRESS.validate_python(host)
        except ValidationError as exc:
            raise click.BadParameter(f"{host!r}: {exc.errors()[0]['msg']}") from None
    return value


def store(_: click.Context, __: click.Parameter, value: str) -> str:
    if value in ("sqlite", "memory") or value.startswith(STORE_PREFIXES):
        return value
    raise click.BadParameter("expected sqlite, memory, sqlite:///PATH or postgres://...")


def token_file(_: click.Context, __: click.Parameter, value: Path | None) -> Path | None:
    """A readable, non-empty file holding a JWT (three dot-separated parts)."""
    if value is None:
        return None
    try:
        with open(value, "rb") as f:
            raw = f.read(MAX_TOKEN_FILE_BYTES + 1)
    except OSError as exc:
        raise click.BadParameter(f"cannot read {value}: {exc.strerror or exc}") from None
    text = raw.decode("utf-8", errors="replace").strip()
    if len(raw) > MAX_TOKEN_FILE_BYTES:
        raise click.BadParameter(f"{value} is larger than 64 KiB: not a token")
    if not text:
        raise click.BadParameter(f"{value} is empty")
    if text.count(".") != 2 or any(c.isspace() for c in text):
        raise click.BadParameter(f"{value} does not hold a token (a JWT: three "
                                 "dot-separated parts, from `gossamer token zone`)")
    return value


def ca_file(_: click.Context, __: click.Parameter, value: Path | None) -> Path | None:
    """A readable PEM bundle that holds at least one CA certificate."""
    if value is None:
        return None
    try:
        ssl.create_default_context(cafile=str(value))
    except FileNotFoundError:
        raise click.BadParameter(f"{value} does not exist") from None
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or exc
        raise click.BadParameter(f"{value} is not a readable PEM CA bundle ({reason})") from None
    return value


# --- options that ``global run`` and ``zone run`` both have --------------------------------

MIN_HEARTBEAT = 0.1
F = Callable[..., Any]


def check_heartbeats(interval: float, timeout: float) -> None:
    if timeout <= interval:
        raise click.UsageError("--heartbeat-timeout must be longer than --heartbeat-interval "
                               "(a few intervals, so that one late heartbeat is not taken "
                               "for a dead stream)")


def api_addr_option(default: str) -> Callable[[F], F]:
    return click.option("--api-addr", envvar="GOSSAMER_API_ADDR", show_envvar=True,
                        default=default, show_default=True, callback=addr, metavar="HOST:PORT",
                        help="HOST:PORT of the HTTP API.")


def store_option(f: F) -> F:
    return click.option(
        "--store", envvar="GOSSAMER_STORE", show_envvar=True, default="sqlite",
        show_default=True, callback=store, metavar="STORE",
        help="sqlite (a file in --data-dir), memory, sqlite:///PATH or postgres://URL.")(f)


def heartbeat_options(f: F) -> F:
    """``--heartbeat-interval`` and ``--heartbeat-timeout``, as seconds; check them with
    ``check_heartbeats`` in the command."""
    f = click.option("--heartbeat-timeout", envvar="GOSSAMER_HEARTBEAT_TIMEOUT",
                     show_envvar=True, default="15s", show_default=True, metavar="DURATION",
                     callback=duration(MIN_HEARTBEAT, seconds=True),
                     help="A sync stream silent this long is torn down.")(f)
    return click.option("--heartbeat-interval", envvar="GOSSAMER_HEARTBEAT_INTERVAL",
                        show_envvar=True, default="5s", show_default=True, metavar="DURATION",
                        callback=duration(MIN_HEARTBEAT, seconds=True),
                        help="How often each sync stream sends a heartbeat.")(f)


def log_level_option(f: F) -> F:
    return click.option("--log-level", envvar="GOSSAMER_LOG_LEVEL", show_envvar=True,
                        default="info", show_default=True,
                        type=click.Choice(LOG_LEVELS, case_sensitive=False))(f)


MIN_LEADER_LEASE = 1.0


def leader_lease_option(f: F) -> F:
    """``--leader-lease``, as seconds (gossamer.election)."""
    return click.option(
        "--leader-lease", envvar="GOSSAMER_LEADER_LEASE", show_envvar=True, default="10s",
        show_default=True, metavar="DURATION", callback=duration(MIN_LEADER_LEASE, seconds=True),
        help="How long the leader's lease lasts: with several replicas on one PostgreSQL "
             "store, another takes the singleton work over within about this long after "
             "the leader dies.")(f)
