"""What every agent that runs Envoy against the zone CP is given, whatever it fronts.

The sidecar agent (``proxy.agent.agent.AgentSettings``) and the zone ingress
(``zone_ingress.agent.IngressSettings``) both register over the agent API with a token,
write Envoy's bootstrap into a work directory and supervise Envoy: those inputs are this
one type, and each kind's settings extend it with what only that kind has. The commands
(``cli.agent_options``) check every value before one of these is built. Every field is a
keyword (``kw_only``), so that a kind can add fields without defaults after these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from proxy.agent.cp_client import ControlPlaneAddress
from proxy.agent.envoy_process import SupervisionPolicy
from proxy.agent.session import SessionPolicy


@dataclass(frozen=True, kw_only=True)
class EnvoyAgentSettings:
    """The control plane to register with, and how to run Envoy.

    ``token`` is the bearer of the agent API and of Envoy's ADS stream (a dataplane token
    for a sidecar, a zone token for an ingress); ``cp_ca_pem`` verifies the control plane;
    ``work_dir`` holds Envoy's bootstrap and log; ``drain_time`` is how long Envoy may
    drain its connections on a stop, in seconds. ``cp_alternates``: more addresses of the
    zone CP (its replicas), dialled in turn after ``cp`` by the agent and by Envoy.
    """

    cp: ControlPlaneAddress
    cp_alternates: tuple[ControlPlaneAddress, ...] = ()
    token: str
    cp_ca_pem: bytes
    work_dir: Path
    envoy_binary: Path
    admin_port: int = 9901
    concurrency: int = 1
    envoy_log_level: str = "info"
    drain_time: float = 5.0
    session: SessionPolicy = field(default_factory=SessionPolicy)
    supervision: SupervisionPolicy = field(default_factory=SupervisionPolicy)
    token_file: Path | None = None  # where ``token`` came from, read again (None: never)
    cp_ca_file: Path | None = None  # where ``cp_ca_pem`` came from, named in errors

    @property
    def bootstrap_path(self) -> Path:
        return self.work_dir / "envoy.yaml"
