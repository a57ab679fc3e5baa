"""What ``gossamer proxy redirect install`` is asked to do, as one frozen, validated value.

The command line's strings are parsed here (``parse_port``, ``parse_cidr``, ``parse_uid``)
so a bad value is a ``ValueError`` whose message names the value and what was expected,
which the CLI shows as one line. ``RedirectSettings`` then only holds values that render
into a ruleset ``nft`` accepts: ports in range, IPv4 networks (the capture listeners are
on 127.0.0.1, so IPv6 is never redirected and has nothing to exclude), distinct capture
ports. Collections are kept sorted and deduplicated, networks collapsed, because ``nft
list`` prints sets that way and the rendered text must equal what the kernel gives back.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from proxy.redirect import defaults

IPv4Net = ipaddress.IPv4Network


def parse_port(text: str) -> int:
    """A TCP/UDP port number, 1-65535."""
    try:
        port = int(text.strip(), 10)
    except ValueError:
        raise ValueError(f"{text!r} is not a port number (1-65535)") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"{port} is not a port number (1-65535)")
    return port


def parse_cidr(text: str) -> IPv4Net:
    """An IPv4 network (``10.0.0.0/8``) or address (``10.1.2.3`` = ``/32``)."""
    try:
        net = ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not an IPv4 address or CIDR: {exc}") from None
    if not isinstance(net, IPv4Net):
        raise ValueError(f"{text!r} is IPv6: only IPv4 is redirected (IPv6 passes "
                         f"untouched), so there is nothing to exclude")
    return net


def parse_uid(text: str) -> int:
    """A numeric uid, 0-4294967294 (4294967295 is the kernel's "no uid")."""
    try:
        uid = int(text.strip(), 10)
    except ValueError:
        raise ValueError(f"{text!r} is not a uid") from None
    if not 0 <= uid < 2**32 - 1:
        raise ValueError(f"{uid} is not a uid (0-4294967294)")
    return uid


def _ports(values: Iterable[int]) -> tuple[int, ...]:
    return tuple(sorted(set(values)))


def _nets(values: Iterable[IPv4Net]) -> tuple[IPv4Net, ...]:
    return tuple(sorted(ipaddress.collapse_addresses(values)))


@dataclass(frozen=True, kw_only=True)
class RedirectSettings:
    """The redirection rules of one network namespace.

    ``exclude_uids``: whose traffic passes untouched (the sidecar's user: Envoy's
    connections upstream and the resolver's forwarded queries would loop otherwise).
    ``outbound_port``/``inbound_port``/``dns_port``: the capture listeners;
    ``dns_port``/``inbound_port`` are ``None`` for ``--no-dns``/``--no-inbound``.
    ``exclude_outbound_ports``/``_cidrs``: destinations that pass untouched, DNS included;
    ``exclude_inbound_ports``: local ports that inbound connections reach directly.
    """

    exclude_uids: tuple[int, ...]
    outbound_port: int = defaults.OUTBOUND_PORT
    inbound_port: int | None = defaults.INBOUND_PORT
    dns_port: int | None = defaults.DNS_PORT
    exclude_outbound_ports: tuple[int, ...] = ()
    exclude_outbound_cidrs: tuple[IPv4Net, ...] = ()
    exclude_inbound_ports: tuple[int, ...] = ()
    table: str = field(default=defaults.TABLE_NAME)

    def __post_init__(self) -> None:
        if not self.exclude_uids:
            raise ValueError("at least one uid must be excluded (the sidecar's), or "
                             "Envoy's own connections would loop back into it")
        for uid in self.exclude_uids:
            parse_uid(str(uid))
        ports = [p for p in (self.outbound_port, self.inbound_port, self.dns_port)
                 if p is not None]
        for port in (*ports, *self.exclude_outbound_ports, *self.exclude_inbound_ports):
            parse_port(str(port))
        if len(set(ports)) != len(ports):
            raise ValueError(f"the capture ports must differ: outbound {self.outbound_port}"
                             f", inbound {self.inbound_port}, DNS {self.dns_port}")
        if not self.table.isidentifier():
            raise ValueError(f"{self.table!r} is not a table name (letters, digits, _)")
        # Normalised as `nft list` prints them (see the module's docstring).
        object.__setattr__(self, "exclude_uids", _ports(self.exclude_uids))
        object.__setattr__(self, "exclude_outbound_ports", _ports(self.exclude_outbound_ports))
        object.__setattr__(self, "exclude_inbound_ports", _ports(self.exclude_inbound_ports))
        object.__setattr__(self, "exclude_outbound_cidrs", _nets(self.exclude_outbound_cidrs))
