"""The addresses of this host's network interfaces, read without a new dependency.

A control plane's serving certificate names them (``gossamer.pki.serving``), so that a
zone, a sidecar or the CLI can call it by any of its IPs on the first run without
``--tls-host``. ``socket.getaddrinfo(socket.gethostname())`` is not enough: it answers
what ``/etc/hosts`` says of the host name (often only ``127.0.1.1``), not what the
interfaces hold.

IPv4: each interface's address by ``SIOCGIFADDR`` (an interface without one is skipped).
IPv6: ``/proc/net/if_inet6``, parsed by ``parse_if_inet6`` (pure), without link-local
addresses (useless without their interface's scope). Anything unreadable (no ``/proc``,
a sandbox that refuses the ioctl) yields fewer addresses, never an error: the operator
can always name more with ``--tls-host``.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import socket
import struct
from pathlib import Path

SIOCGIFADDR = 0x8915
IF_INET6 = Path("/proc/net/if_inet6")
_LINK_SCOPE = 0x20


def parse_if_inet6(text: str) -> list[str]:
    """The non-link-local addresses of ``/proc/net/if_inet6``'s text, in its order.

    Each line is ``ADDR32HEX IFINDEX PREFIXLEN SCOPE FLAGS NAME``; malformed lines are
    skipped (the file is the kernel's, but a sandbox may emulate it loosely)."""
    out: list[str] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 4 or len(fields[0]) != 32:
            continue
        try:
            address = ipaddress.IPv6Address(bytes.fromhex(fields[0]))
            scope = int(fields[3], 16)
        except ValueError:
            continue
        if scope != _LINK_SCOPE and not address.is_link_local:
            out.append(str(address))
    return out


def _ipv4_of(name: str) -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            answer = fcntl.ioctl(sock.fileno(), SIOCGIFADDR,
                                 struct.pack("256s", name.encode()[:15]))
        except OSError:  # no IPv4 address on this interface
            return None
    return socket.inet_ntoa(answer[20:24])


def interface_addresses() -> list[str]:
    """Every IPv4 and (non-link-local) IPv6 address of this host's interfaces, loopback
    included, without duplicates."""
    out: list[str] = []
    try:
        names = [name for _, name in socket.if_nameindex()]
    except OSError:
        names = []
    for name in names:
        ipv4 = _ipv4_of(name)
        if ipv4 is not None:
            out.append(ipv4)
    with contextlib.suppress(OSError):
        out.extend(parse_if_inet6(IF_INET6.read_text()))
    return list(dict.fromkeys(out))
