"""What the zone CP sends an agent on its Session after ``Registered``, as Gossamer types.

The registry, the zone CA's trust pushes and the DNS publisher put these on a session's
``updates`` (``zone_cp.mailbox``); only the gRPC edge (``zone_cp.agent_service``)
converts them to ``agent_pb2.ControlPlaneMessage`` (``to_message``), so protobuf does
not travel inward. Each is state, not an event: the mailbox keeps the newest of each
type.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from sync.v1 import agent_pb2


@dataclass(frozen=True)
class TrustBundle:
    """The mesh's trust bundle (PEM, one or more CA certificates)."""

    pem: bytes


@dataclass(frozen=True)
class Renew:
    """Ask the sidecar for a new certificate now."""


@dataclass(frozen=True)
class Heartbeat:
    """Nothing to say: keeps the stream moving, or wakes the Session loop."""


@dataclass(frozen=True)
class DnsEntry:
    """One ``.mesh`` name and its virtual IPs and ports."""

    name: str
    ips: tuple[str, ...]
    ports: tuple[int, ...]


class _TableMessage(Protocol):
    version: str

    @property
    def entries(self) -> Iterable[agent_pb2.DnsTable.Entry]: ...


@dataclass(frozen=True)
class DnsTable:
    """A mesh's DNS table; ``version`` is a digest of its content (``zone_cp.mesh_dns``)."""

    version: str
    entries: tuple[DnsEntry, ...]

    @classmethod
    def from_message(cls, table: _TableMessage) -> DnsTable:
        return cls(table.version, tuple(DnsEntry(e.name, tuple(e.ips), tuple(e.ports))
                                        for e in table.entries))


Update = TrustBundle | Renew | Heartbeat | DnsTable


def to_message(update: Update) -> agent_pb2.ControlPlaneMessage:
    """``update`` as the agent API's wire message."""
    match update:
        case TrustBundle(pem=pem):
            return agent_pb2.ControlPlaneMessage(trust_bundle=agent_pb2.TrustBundle(pem=pem))
        case Renew():
            return agent_pb2.ControlPlaneMessage(renew=agent_pb2.Renew())
        case Heartbeat():
            return agent_pb2.ControlPlaneMessage(heartbeat=agent_pb2.Heartbeat())
        case DnsTable(version=version, entries=entries):
            return agent_pb2.ControlPlaneMessage(dns_table=agent_pb2.DnsTable(
                version=version, entries=[agent_pb2.DnsTable.Entry(
                    name=e.name, ips=e.ips, ports=e.ports) for e in entries]))
    raise TypeError(f"not an agent update: {update!r}")
