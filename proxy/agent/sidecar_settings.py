"""The sidecar agent's settings: what every Envoy agent has, plus the Dataplane and what
only a sidecar serves.

Apart from ``proxy.agent.agent`` (which re-exports ``AgentSettings``) so that ``proxy run``
builds and checks them without importing the agent's runtime (gRPC, Envoy's protobufs):
the command hands them to a fresh interpreter (``cli.agent_runtime``) that does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dns.server import ServerConfig
from proxy.agent.dataplane_file import DataplaneFile
from proxy.agent.settings import EnvoyAgentSettings
from proxy.agent.vip_route import VipRoute


@dataclass(frozen=True, kw_only=True)
class AgentSettings(EnvoyAgentSettings):
    """One sidecar agent's inputs, all checked by the command before the agent is built:
    what every Envoy agent has, plus the Dataplane and what only a sidecar serves."""

    dataplane: DataplaneFile
    metrics_tls: tuple[bytes, bytes] | None = None  # MeshMetric ProvidedTLS (chain, key)
    dns: ServerConfig = field(default_factory=ServerConfig)  # the .mesh resolver (--dns-addr)
    vip: VipRoute = field(default_factory=VipRoute)  # --vip-cidr, --vip-route
