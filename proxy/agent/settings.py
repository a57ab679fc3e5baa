"""What every agent that runs Envoy against the zone CP is given, whatever it fronts.

The sidecar agent (``proxy.agent.agent.AgentSettings``) and the zone ingress
(``zone_ingress.agent.IngressSettings``) both register over the agent API with a token,
write Envoy's bootstrap into a work directory and supervise Envoy: those inputs are this
one type, and each kind's settings extend it with what only that kind has. The commands
(``cli.agent_options``) check every value before one of these is built. Every field is a
keyword (``kw_only``), so that a kind can add fields without defaults after these.

The types the settings hold (``ControlPlaneAddress``, ``SessionPolicy``) live here rather
than beside the gRPC code that uses them (``cp_client``, ``session``, which re-export
them), so that a command builds and checks settings without importing gRPC.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from proxy.agent.envoy_process import SupervisionPolicy
from proxy.agent.errors import InputError

DEFAULT_PORT = 5678
CP_EXAMPLE = "https://zone-cp.example.com:5678"


@dataclass(frozen=True)
class ControlPlaneAddress:
    """Where the zone CP's xDS and agent API listen: ``https://HOST[:PORT]``."""

    host: str
    port: int = DEFAULT_PORT

    @classmethod
    def parse(cls, url: str) -> ControlPlaneAddress:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise InputError(f"--cp {url!r}: {exc}") from None
        if (parts.scheme.lower() not in ("https", "grpcs") or not parts.hostname
                or parts.path.strip("/") or parts.query or parts.fragment or parts.username
                or port == 0):
            raise InputError(f"--cp {url!r}: expected https://HOST:PORT, like {CP_EXAMPLE}")
        return cls(parts.hostname, port or DEFAULT_PORT)

    @property
    def target(self) -> str:
        try:
            if ipaddress.ip_address(self.host).version == 6:
                return f"[{self.host}]:{self.port}"
        except ValueError:
            pass
        return f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return f"https://{self.target}"


@dataclass(frozen=True)
class SessionPolicy:
    """Heartbeats (``interval``, ``timeout``) and reconnect backoff, in seconds."""

    interval: float = 5.0
    timeout: float = 15.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    healthy_after: float = 10.0
    handover: float = 5.0
    handover_retry: float = 0.05




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


def checked_registration(doc: dict[str, object], kind: str, what: str) -> str:
    """``doc``, the registration a zone proxy's flags make, checked with the model of its
    one ``kind`` (``ZoneIngress``, ``ZoneEgress``) and written as JSON; an ``InputError``
    says which flag is wrong. The model (pydantic) is imported here, in the command:
    the runtime it becomes (``cli.agent_runtime``) registers the checked JSON as it is."""
    import importlib
    import json

    from gossamer.errors import InvalidResource
    from gossamer.model.registry import Registry, parse_document

    model = importlib.import_module(f"gossamer.model.{kind.lower()}")
    try:
        parse_document(doc, Registry([model.DESCRIPTOR]))
    except InvalidResource as exc:
        raise InputError(f"the {what}'s flags make no valid {kind}: {exc.detail}") from None
    return json.dumps(doc)
