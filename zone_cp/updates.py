"""What the zone CP sends an agent on its Session after ``Registered``, as Gossamer types.

The registry, the zone CA's trust pushes and the DNS publisher put these on a session's
``updates`` (``zone_cp.mailbox``); only the gRPC edge converts them to
``agent_pb2.ControlPlaneMessage`` (``zone_cp.agent_wire.to_message``, called by
``zone_cp.agent_service``), so protobuf does not travel inward. Each is state, not an
event: the mailbox keeps the newest of each type.
"""

from __future__ import annotations

from dataclasses import dataclass


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


@dataclass(frozen=True)
class DnsTable:
    """A mesh's DNS table; ``version`` is a digest of its content (``zone_cp.mesh_dns``)."""

    version: str
    entries: tuple[DnsEntry, ...]


@dataclass(frozen=True)
class InspectEnvoy:
    """Fetch one Envoy admin page (``sync.relay.PAGES``) and answer ``request_id``
    (``zone_cp.admin_channel``: one at a time per sidecar, so one pending is enough)."""

    request_id: int
    page: str


Update = TrustBundle | Renew | Heartbeat | DnsTable | InspectEnvoy

