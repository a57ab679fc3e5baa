"""Everything Envoy resource generation needs to know about one proxy, as plain values.

The zone CP builds a ``ProxyContext`` from its store (the Dataplane, the Mesh, the
matched policies, the endpoints of the services the proxy talks to) and hands it to the
pure generators in ``proxy.envoy``; nothing in here touches a store or a socket.

Names shared by the generators, the xDS server and the agent's bootstrap are defined in
``proxy.names`` and re-exported here, so the three agree on them by construction while
the agent imports the names without this module's policy types.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from gossamer.model.dataplane import DataplaneSpec
from gossamer.policy import ProxyPolicies
from proxy.names import (  # noqa: F401 (re-exported: the generators import them from here)
    ADMIN_CLUSTER,
    ADS_CLUSTER,
    IDENTITY_SECRET,
    PROMETHEUS_TLS_SECRET,
    SDS_CLUSTER,
    TRUST_SECRET,
)


def sni(service: str, mesh: str, port: int | None = None) -> str:
    """The SNI a client sidecar sends and the zone ingress routes on; with ``port``, the
    one that names a port of a service with several (``proxy.envoy.ports``)."""
    name = f"{service}.{mesh}.mesh"
    return name if port is None else f"{port}.{name}"


def spiffe(mesh: str, service: str) -> str:
    return f"spiffe://{mesh}/{service}"


def external_sni(name: str, mesh: str) -> str:
    """The SNI a sidecar sends its zone egress for the MeshExternalService ``name``: the
    egress routes on it (``zone_egress.envoy``); ``.extsvc.`` keeps it apart from every
    service's ``sni``, as ``<name>.extsvc.mesh`` is from ``<service>.mesh``."""
    return f"{name}.extsvc.{mesh}.mesh"


def egress_spiffe(mesh: str, zone: str) -> str:
    """The identity of ``zone``'s egress in ``mesh``: a path no service name can take
    (names have no ``/``), so no workload can pose as the egress to its sidecars."""
    return f"spiffe://{mesh}/zone-egress/{zone}"


def tag_uri(key: str, value: str) -> str:
    """An extra URI SAN per inbound tag, so permissions can select by tags (not only
    service): ``gossamer://version/v1``."""
    return f"gossamer://{key}/{value}"


@dataclass(frozen=True)
class Endpoint:
    """A local instance of a service: where its sidecar's inbound listens."""

    address: str
    port: int
    tags: Mapping[str, str] = field(default_factory=dict)
    weight: int = 1
    healthy: bool = True
    # The port the service is called on at this instance (its inbound's ``servicePort``,
    # else ``port``); 0 when unknown.
    service_port: int = 0


@dataclass(frozen=True)
class ServicePort:
    """A port a service is called on, with its protocol."""

    port: int
    protocol: str = "tcp"


@dataclass(frozen=True)
class RemoteZone:
    """A zone ingress through which other zones' instances of a service are reached, and
    the ports the service has there (empty when the zone did not say: older zones)."""

    zone: str
    address: str
    port: int
    instances: int = 1
    ports: tuple[ServicePort, ...] = ()


@dataclass(frozen=True)
class ExternalTls:
    """The TLS a sidecar originates to an external service (``proxy.envoy.external``):
    ``mode`` is a MeshExternalService verification mode; ``ca_pem`` holds certificates
    only (public), read from the Secret or the spec; ``subject_alt_names`` are
    ``(Exact|Prefix, value)`` pairs; the versions are ``TLS12``/``TLS13`` or "".
    ``client_cert_pem`` and ``client_key_pem``: the client certificate the zone egress
    presents; the key is only ever in the egress's context (``zone_cp.mesh_state``
    removes it from what sidecars are generated from) and never in a repr."""

    mode: str = "Secured"
    server_name: str = ""
    subject_alt_names: tuple[tuple[str, str], ...] = ()
    ca_pem: bytes = b""
    min_version: str = ""
    max_version: str = ""
    client_cert_pem: bytes = b""
    client_key_pem: bytes = field(default=b"", repr=False)


@dataclass(frozen=True)
class Egress:
    """The zone egress a sidecar sends external traffic through (``routing.zoneEgress``):
    where it listens, its zone and the caller's mesh (its identity there is
    ``egress_spiffe(mesh, zone)``)."""

    address: str
    port: int
    zone: str
    mesh: str


@dataclass(frozen=True)
class ExternalService:
    """A MeshExternalService as its callers' sidecars reach it: ``endpoints`` as
    ``(address or host name, port)``; ``problem`` says why it cannot be reached safely
    (its CA Secret is missing or holds no certificate), and then it gets no endpoints."""

    name: str
    port: int
    protocol: str = "tcp"
    endpoints: tuple[tuple[str, int], ...] = ()
    tls: ExternalTls | None = None
    problem: str = ""
    # Set when the Mesh routes external services through the zone egress: the zone's
    # egresses, to which the sidecar opens mesh mTLS; they originate ``tls``.
    via: tuple[Egress, ...] = ()


@dataclass(frozen=True)
class Service:
    """A destination: its protocol (from its inbounds' ``gossamer.io/protocol`` tag),
    local endpoints (priority 0) and remote zones (priority 1); or, with ``external``,
    a MeshExternalService (its ``name`` is then the key ``extsvc@<name>``)."""

    name: str
    protocol: str = "tcp"
    endpoints: tuple[Endpoint, ...] = ()
    remote: tuple[RemoteZone, ...] = ()
    external: ExternalService | None = None


@dataclass(frozen=True)
class OutboundListener:
    """Where the local app reaches a service: an explicit port on 127.0.0.1 or a VIP;
    ``zone`` for the VIP of a zone-pinned name, whose traffic goes to that zone's
    instances only (``proxy.envoy.outbound``); ``external`` for the VIP of a
    MeshExternalService (``service`` is its key ``extsvc@<name>``), whose traffic leaves
    the mesh (``proxy.envoy.external``)."""

    service: str
    port: int
    address: str = "127.0.0.1"
    zone: str = ""
    external: bool = False


@dataclass(frozen=True)
class ProxyContext:
    """One proxy's inputs. ``services`` holds every service named by ``outbounds`` and
    every backend a route may send to; ``mtls_mode`` is the Mesh's (``strict`` or
    ``permissive``); ``zone`` is the proxy's zone, for locality; ``passthrough`` is the
    Mesh's ``networking.outbound.passthrough`` (for a transparent proxy's capture)."""

    mesh: str
    name: str
    zone: str
    dataplane: DataplaneSpec
    policies: ProxyPolicies
    outbounds: tuple[OutboundListener, ...] = ()
    services: Mapping[str, Service] = field(default_factory=dict)
    mtls_mode: str = "strict"
    passthrough: bool = True

