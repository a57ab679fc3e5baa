"""The agent API's wire form of what the zone CP sends an agent (``zone_cp.updates``).

Only the gRPC edge (``zone_cp.agent_service``) converts updates to protobuf; the DNS
table's version (``zone_cp.mesh_dns.dns_table``) is a digest of its wire form, so it
names exactly what an agent receives.
"""

from __future__ import annotations

from sync.relay_wire import page_value
from sync.v1 import agent_pb2
from zone_cp.updates import DnsTable, Heartbeat, InspectEnvoy, Renew, TrustBundle, Update


def dns_table_message(table: DnsTable) -> agent_pb2.DnsTable:
    return agent_pb2.DnsTable(version=table.version, entries=[
        agent_pb2.DnsTable.Entry(name=e.name, ips=e.ips, ports=e.ports)
        for e in table.entries])


def to_message(update: Update) -> agent_pb2.ControlPlaneMessage:
    """``update`` as the agent API's wire message."""
    match update:
        case TrustBundle(pem=pem):
            return agent_pb2.ControlPlaneMessage(trust_bundle=agent_pb2.TrustBundle(pem=pem))
        case Renew():
            return agent_pb2.ControlPlaneMessage(renew=agent_pb2.Renew())
        case Heartbeat():
            return agent_pb2.ControlPlaneMessage(heartbeat=agent_pb2.Heartbeat())
        case DnsTable():
            return agent_pb2.ControlPlaneMessage(dns_table=dns_table_message(update))
        case InspectEnvoy(request_id=rid, page=page):
            return agent_pb2.ControlPlaneMessage(envoy_admin_request=agent_pb2.EnvoyAdminRequest(
                request_id=rid, page=page_value(page)))  # type: ignore[arg-type]
    raise TypeError(f"not an agent update: {update!r}")
