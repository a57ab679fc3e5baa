"""``gossamer proxy redirect install|uninstall``: the transparent proxy's nftables rules.

Run as root in the workload's network namespace (``ip netns exec NS gossamer proxy
redirect install``) or on the host. The flags become one ``RedirectSettings``
(``proxy.redirect.settings``), a bad value is a usage error naming it (exit 2); the
rules are ``proxy.redirect.ruleset``'s and ``proxy.redirect.apply`` writes them with
``nft``. ``--dry-run`` prints the table and touches nothing (no root needed). Without
``--exclude-uid``, the sidecar's user ``gossamer`` is excluded and ``install`` creates it
(``useradd --system``) when missing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

import click

from proxy.redirect import defaults
from proxy.redirect.apply import install as apply_install
from proxy.redirect.apply import uninstall as apply_uninstall
from proxy.redirect.errors import NoSuchUser
from proxy.redirect.ruleset import Plan, render, table_ref, uninstall_script
from proxy.redirect.settings import RedirectSettings, parse_cidr, parse_port
from proxy.redirect.system import Nft, ensure_system_user, require_root, resolve_uid, uid_of

T = TypeVar("T")


def _listed(parse: Callable[[str], T]) -> Callable[[click.Context, click.Parameter, Any],
                                                    tuple[T, ...]]:
    """A repeatable, comma-separated option (``--exclude-outbound-ports 22,5432``)."""

    def check(_: click.Context, __: click.Parameter, values: tuple[str, ...]) -> tuple[T, ...]:
        try:
            return tuple(parse(part) for value in values for part in value.split(",")
                         if part.strip())
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None

    return check


def _port(_: click.Context, __: click.Parameter, value: str) -> int:
    try:
        return parse_port(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def exclude_uids(given: tuple[str, ...], *, create: bool) -> tuple[int, ...]:
    """The uids to exclude: the given ones, else the sidecar user's (created if asked)."""
    parts = [part.strip() for text in given for part in text.split(",") if part.strip()]
    if parts:
        return tuple(resolve_uid(part) for part in parts)
    name = defaults.SIDECAR_USER
    if create:
        uid, created = ensure_system_user(name)
        if created:
            click.echo(f"created the system user {name} (uid {uid}): run the sidecar as it",
                       err=True)
        return (uid,)
    uid_or_none = uid_of(name)
    if uid_or_none is None:
        raise NoSuchUser(f"the user {name} does not exist yet (install creates it), so its "
                         f"uid is unknown: create it (useradd --system {name}) or pass "
                         f"--exclude-uid")
    return (uid_or_none,)


@click.group()
def redirect() -> None:
    """Transparent proxy: send the workload's traffic through the sidecar (nftables)."""


@redirect.command()
@click.option("--exclude-uid", "uids", multiple=True, metavar="USER|UID,...",
              help="Whose traffic passes untouched: the user the sidecar runs as "
                   f"(repeatable) [default: {defaults.SIDECAR_USER}, created if missing].")
@click.option("--outbound-port", default=str(defaults.OUTBOUND_PORT), show_default=True,
              metavar="PORT", callback=_port,
              help="Envoy's outbound capture listener on 127.0.0.1.")
@click.option("--inbound-port", default=str(defaults.INBOUND_PORT), show_default=True,
              metavar="PORT", callback=_port,
              help="Envoy's inbound capture listener (bound on 0.0.0.0).")
@click.option("--dns-port", default=str(defaults.DNS_PORT), show_default=True,
              metavar="PORT", callback=_port,
              help="The sidecar's resolver on 127.0.0.1 (UDP and TCP).")
@click.option("--no-dns", is_flag=True, help="Leave DNS (port 53) alone.")
@click.option("--no-inbound", is_flag=True, help="Leave inbound connections alone.")
@click.option("--exclude-outbound-ports", "out_ports", multiple=True, metavar="PORT,...",
              callback=_listed(parse_port), help="Destination ports that pass untouched.")
@click.option("--exclude-outbound-cidrs", "out_cidrs", multiple=True, metavar="CIDR,...",
              callback=_listed(parse_cidr),
              help="Destination IPv4 networks that pass untouched (DNS to them too).")
@click.option("--exclude-inbound-ports", "in_ports", multiple=True, metavar="PORT,...",
              callback=_listed(parse_port), help="Local ports reached directly from outside.")
@click.option("--dry-run", is_flag=True, help="Print the nftables table; change nothing.")
def install(uids: tuple[str, ...], outbound_port: int, inbound_port: int, dns_port: int,
            no_dns: bool, no_inbound: bool, out_ports: tuple[int, ...],
            out_cidrs: tuple[Any, ...], in_ports: tuple[int, ...], dry_run: bool) -> None:
    """Redirect this network namespace's traffic to the sidecar (idempotent).

    Outbound TCP goes to 127.0.0.1:--outbound-port (Envoy reads the original
    destination), inbound TCP to --inbound-port, DNS to any server to 127.0.0.1:--dns-port.
    """
    if not dry_run:
        require_root("gossamer proxy redirect install")
    try:
        # Every flag is checked (uid 0 stands in) before a user is looked up or created.
        asked = RedirectSettings(
            exclude_uids=(0,), outbound_port=outbound_port,
            inbound_port=None if no_inbound else inbound_port,
            dns_port=None if no_dns else dns_port, exclude_outbound_ports=out_ports,
            exclude_outbound_cidrs=out_cidrs, exclude_inbound_ports=in_ports)
        settings = replace(asked, exclude_uids=exclude_uids(uids, create=not dry_run))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if dry_run:
        click.echo(render(settings), nl=False)
        return
    done = apply_install(settings, Nft())
    ref = table_ref(settings)
    click.echo({Plan.CREATE: f"installed table {ref}",
                Plan.REPLACE: f"replaced table {ref} with the rules asked for",
                Plan.KEEP: f"table {ref} already holds these rules: nothing changed"}[done])


@redirect.command()
@click.option("--dry-run", is_flag=True, help="Print what would be removed; change nothing.")
def uninstall(dry_run: bool) -> None:
    """Remove the table `install` wrote; the rest of the ruleset is left as it is."""
    ref = f"{defaults.TABLE_FAMILY} {defaults.TABLE_NAME}"
    if dry_run:
        click.echo(uninstall_script(), nl=False)
        return
    require_root("gossamer proxy redirect uninstall")
    if apply_uninstall(Nft()):
        click.echo(f"removed table {ref}")
    else:
        click.echo(f"table {ref} is not installed: nothing to remove")
