"""The DNS table: which ``.mesh`` name resolves to which virtual IPs.

The zone CP computes it and sends it to each agent as a ``DnsTable`` protobuf message
(``sync/v1/agent.proto``); ``DnsTable.from_message`` converts that wire type into this
frozen domain type at the edge, so the resolver never sees protobuf (STYLE habit 5).
Tests and tools build one from a plain mapping with ``DnsTable.from_mapping``.

Names are normalised once, here: lower case, with the trailing dot of a fully qualified
name (``Backend.Mesh`` -> ``backend.mesh.``), so a lookup is one dict access. The table
is bounded (entries, name length, addresses per name) because it arrives from the
network and is held in every sidecar; a table out of bounds raises ``InvalidTable``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

from dns.errors import InvalidTable

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_ENTRIES = 65_536
MAX_NAME_LENGTH = 253  # presentation form without the trailing dot (RFC 1035: 255 octets)
MAX_LABEL_LENGTH = 63
MAX_ADDRESSES_PER_NAME = 32
# Service names may carry underscores (Kuma's ``backend_default_svc_80``); anything
# else outside letters, digits and hyphens would not survive a round trip through DNS.
_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?$")


class _EntryMessage(Protocol):
    name: str
    ips: Iterable[str]


class _TableMessage(Protocol):
    """The shape of ``sync.v1.agent_pb2.DnsTable`` that this module reads."""

    @property
    def entries(self) -> Iterable[_EntryMessage]: ...

    version: str


def normalise_name(name: str) -> str:
    """``name`` in lower case with one trailing dot; ``InvalidTable`` if it is no DNS name."""
    text = name.strip().lower()
    if text.endswith("."):
        text = text[:-1]
    if not text:
        raise InvalidTable(f"empty DNS name {name!r}")
    if len(text) > MAX_NAME_LENGTH:
        raise InvalidTable(f"DNS name longer than {MAX_NAME_LENGTH} characters: {name!r}")
    for label in text.split("."):
        if len(label) > MAX_LABEL_LENGTH or not _LABEL.match(label):
            raise InvalidTable(f"invalid DNS label {label!r} in {name!r}")
    return text + "."


def _parse_address(name: str, raw: str | Address) -> Address:
    if isinstance(raw, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return raw
    try:
        return ipaddress.ip_address(raw.strip())
    except ValueError:
        raise InvalidTable(f"{name}: not an IP address: {raw!r}") from None


@dataclass(frozen=True, eq=False)
class DnsTable:
    """Fully qualified lower-case names to their addresses (IPv4 and IPv6, in order).

    ``version`` is the zone CP's version of the table, kept for logs and inspection.
    Construct with ``from_mapping`` or ``from_message``; both validate and normalise.
    """

    entries: Mapping[str, tuple[Address, ...]] = field(default_factory=dict)
    version: str = ""
    # Every name in the table and each of its ancestors: a name that is an ancestor
    # of an entry exists in DNS (an "empty non-terminal") and answers NOERROR, not
    # NXDOMAIN (RFC 8020).
    _nodes: frozenset[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.entries) > MAX_ENTRIES:
            raise InvalidTable(f"DNS table has {len(self.entries)} entries, max {MAX_ENTRIES}")
        clean: dict[str, tuple[Address, ...]] = {}
        for raw_name, raw_addresses in self.entries.items():
            name = normalise_name(raw_name)
            addresses = list(clean.get(name, ()))
            for address in raw_addresses:
                if not isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
                    raise InvalidTable(f"{name}: not an IP address: {address!r}")
                if address not in addresses:
                    addresses.append(address)
            if len(addresses) > MAX_ADDRESSES_PER_NAME:
                raise InvalidTable(
                    f"{name}: {len(addresses)} addresses, max {MAX_ADDRESSES_PER_NAME}"
                )
            clean[name] = tuple(addresses)
        nodes: set[str] = set()
        for name in clean:
            labels = name[:-1].split(".")
            nodes.update(".".join(labels[i:]) + "." for i in range(len(labels)))
        object.__setattr__(self, "entries", MappingProxyType(clean))
        object.__setattr__(self, "_nodes", frozenset(nodes))

    @classmethod
    def from_mapping(
        cls, mapping: Mapping[str, Iterable[str | Address]], version: str = ""
    ) -> DnsTable:
        """A table from ``{"backend.mesh": ["240.0.0.1"], ...}``."""
        if len(mapping) > MAX_ENTRIES:
            raise InvalidTable(f"DNS table has {len(mapping)} entries, max {MAX_ENTRIES}")
        parsed = {
            name: tuple(_parse_address(name, raw) for raw in ips) for name, ips in mapping.items()
        }
        return cls(parsed, version)

    @classmethod
    def from_message(cls, message: _TableMessage) -> DnsTable:
        """A table from the agent API's ``DnsTable`` message; repeated names merge."""
        merged: dict[str, list[str]] = {}
        for count, entry in enumerate(message.entries, start=1):
            if count > MAX_ENTRIES:
                raise InvalidTable(f"DNS table has more than {MAX_ENTRIES} entries")
            merged.setdefault(entry.name, []).extend(entry.ips)
        return cls.from_mapping(merged, message.version)

    def lookup(self, name: str) -> tuple[Address, ...] | None:
        """The addresses of ``name`` (any case, dot or not), or None when it is unknown."""
        key = name.lower()
        if not key.endswith("."):
            key += "."
        return self.entries.get(key)

    def exists(self, name: str) -> bool:
        """Whether ``name`` is in the table or is an ancestor of a name that is."""
        key = name.lower()
        if not key.endswith("."):
            key += "."
        return key in self._nodes

    def __len__(self) -> int:
        return len(self.entries)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DnsTable):
            return NotImplemented
        return dict(self.entries) == dict(other.entries) and self.version == other.version

    __hash__ = None  # type: ignore[assignment]
