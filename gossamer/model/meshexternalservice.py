"""MeshExternalService: a destination outside the mesh that meshed applications call by name.

A managed database, a SaaS API, a legacy host: not a sidecar, so nothing in the mesh
knows its address, speaks mTLS to it or applies policies to traffic bound for it. A
MeshExternalService names it (mesh-scoped, applied at the global and synced to the zones,
or at a standalone zone): ``match`` says how the mesh's applications call it (a port and
a protocol; ``<name>.extsvc.mesh`` resolves to a VIP of its own in every zone allowed to
reach it, ``zones``, all when empty), ``endpoints`` where it really is (IP addresses, or
host names that Envoy resolves and re-resolves), and ``tls`` whether the sidecar
originates TLS to it, so the application speaks plain HTTP and the connection leaves
the host encrypted and verified.

Policies name it as a destination with ``to[].targetRef: {kind: MeshExternalService,
name}``: its destination key (``destination_key``) is ``extsvc@<name>``, which no
service can be called (``@`` occurs in no tag value), so it shares the machinery of
services (policy matching, VIP allocation, the generators' lookups) without colliding.

Verification modes, as in Kuma: ``Secured`` checks the chain (against ``caCert``, which
is required then) and the name (``subjectAltNames``, else ``serverName``, else the host
names among the endpoints); ``SkipSAN`` checks the chain only; ``SkipAll`` nothing.
``SkipCA`` (the name over any chain) is refused: Envoy's ``ACCEPT_UNTRUSTED`` accepts a
certificate whatever fails, its name too (tests/integration/test_external_service.py
showed a wrong name passing), so it would be ``SkipAll`` under another name.

Client certificates are not supported: their key would have to reach Envoy inside the
cluster (CDS), served by the zone CP, or by SDS from an agent that does not hold it.
"""

from __future__ import annotations

import enum
import ipaddress
import re

from cryptography import x509
from pydantic import BaseModel, Field, model_validator

from gossamer.model.base import KindDescriptor, Scope, SyncDirection
from gossamer.model.fields import SPEC_CONFIG, Name, Port
from gossamer.model.policy_fields import fail_at

MAX_ENDPOINTS = 64
MAX_SANS = 32
MAX_ZONES = 256
MAX_PEM = 64 * 1024
# A destination key of this prefix is an external service (see the module docstring).
KEY_PREFIX = "extsvc@"
_HOST_RE = re.compile(
    r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_TLS_VERSIONS = ("TLS12", "TLS13")


class Protocol(enum.StrEnum):
    TCP = "tcp"
    HTTP = "http"
    HTTP2 = "http2"
    GRPC = "grpc"


HTTP_PROTOCOLS = frozenset({Protocol.HTTP, Protocol.HTTP2, Protocol.GRPC})


class TlsVersion(enum.StrEnum):
    TLS12 = "TLS12"
    TLS13 = "TLS13"


class VerificationMode(enum.StrEnum):
    SECURED = "Secured"
    SKIP_SAN = "SkipSAN"
    SKIP_CA = "SkipCA"
    SKIP_ALL = "SkipAll"


class SanType(enum.StrEnum):
    EXACT = "Exact"
    PREFIX = "Prefix"


def is_ip(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def is_host_name(value: str) -> bool:
    return len(value) <= 253 and bool(_HOST_RE.match(value)) and not is_ip(value)


class Match(BaseModel):
    model_config = SPEC_CONFIG

    port: Port
    protocol: Protocol = Protocol.TCP


class ExternalEndpoint(BaseModel):
    model_config = SPEC_CONFIG

    address: str = Field(min_length=1, max_length=253)
    port: Port

    @model_validator(mode="after")
    def _address(self) -> ExternalEndpoint:
        if not is_ip(self.address) and not is_host_name(self.address):
            fail_at("address", "expected an IP address or a lower-case host name like "
                               "api.example.com", self.address)
        return self


class CaCert(BaseModel):
    """Exactly one of ``secretRef`` (a mesh Secret holding PEM) or ``inline`` (PEM)."""

    model_config = SPEC_CONFIG

    secret_ref: Name | None = None
    inline: str | None = Field(None, max_length=MAX_PEM)

    @model_validator(mode="after")
    def _one(self) -> CaCert:
        if (self.secret_ref is None) == (self.inline is None):
            fail_at((), "give exactly one of secretRef or inline")
        if self.inline is not None and pem_problem(self.inline.encode()):
            fail_at("inline", pem_problem(self.inline.encode()) or "", "<PEM>")
        return self


def pem_problem(data: bytes) -> str | None:
    """Why ``data`` is no PEM bundle of CA certificates, or None when it is one."""
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        return "expected one or more PEM certificates (-----BEGIN CERTIFICATE-----)"
    return None if certs else "expected at least one PEM certificate"


class KeyRef(BaseModel):
    """A private key: always a mesh Secret (``secretRef``), never inline in the spec, so
    that reading the MeshExternalService never reads a key."""

    model_config = SPEC_CONFIG

    secret_ref: Name


class SubjectAltName(BaseModel):
    model_config = SPEC_CONFIG

    type: SanType = SanType.EXACT
    value: str = Field(min_length=1, max_length=253)


class Verification(BaseModel):
    model_config = SPEC_CONFIG

    mode: VerificationMode = VerificationMode.SECURED
    server_name: str | None = Field(None, min_length=1, max_length=253)
    subject_alt_names: list[SubjectAltName] | None = Field(None, max_length=MAX_SANS)
    ca_cert: CaCert | None = None

    @model_validator(mode="after")
    def _fields(self) -> Verification:
        if self.server_name is not None and not is_host_name(self.server_name):
            fail_at("serverName", "expected a lower-case host name like api.example.com",
                    self.server_name)
        if self.mode is VerificationMode.SKIP_CA:
            fail_at("mode", "SkipCA is not supported: Envoy checks a certificate's name only "
                            "over a verified chain (accepting any chain accepts any name): "
                            "use Secured with the server's CA, or SkipAll", self.mode.value)
        checks_ca = self.mode in (VerificationMode.SECURED, VerificationMode.SKIP_SAN)
        if checks_ca and self.ca_cert is None:
            fail_at("caCert", f"mode {self.mode.value} verifies the server's chain: give "
                              "caCert (secretRef or inline), or use mode SkipAll")
        if not checks_ca and self.ca_cert is not None:
            fail_at("caCert", f"mode {self.mode.value} does not verify the chain")
        return self


class Versions(BaseModel):
    model_config = SPEC_CONFIG

    min: TlsVersion | None = None
    max: TlsVersion | None = None

    @model_validator(mode="after")
    def _order(self) -> Versions:
        if self.min and self.max and _TLS_VERSIONS.index(self.min) > _TLS_VERSIONS.index(
                self.max):
            fail_at("min", f"{self.min.value} is newer than max {self.max.value}",
                    self.min.value)
        return self


class Tls(BaseModel):
    model_config = SPEC_CONFIG

    enabled: bool = False
    version: Versions | None = None
    verification: Verification | None = None
    # A client certificate (chain: secretRef or inline PEM) and its key (a Secret),
    # presented by the zone egress, which alone holds the key (``zone_egress.envoy``).
    client_cert: CaCert | None = None
    client_key: KeyRef | None = None

    @model_validator(mode="after")
    def _enabled(self) -> Tls:
        if (self.client_cert is None) != (self.client_key is None):
            missing = "clientKey" if self.client_key is None else "clientCert"
            fail_at(missing, "give clientCert and clientKey together")
        if not self.enabled:
            for field, alias in (("version", "version"), ("verification", "verification"),
                                 ("client_cert", "clientCert"), ("client_key", "clientKey")):
                if getattr(self, field) is not None:
                    fail_at(alias, "applies only with enabled: true")
        elif self.verification is None:
            fail_at("verification", "required with enabled: true (its caCert, or mode "
                                    "SkipCA or SkipAll to accept any chain)")
        return self


class MeshExternalServiceSpec(BaseModel):
    model_config = SPEC_CONFIG

    match: Match
    endpoints: list[ExternalEndpoint] = Field(min_length=1, max_length=MAX_ENDPOINTS)
    tls: Tls | None = None
    zones: list[Name] | None = Field(None, max_length=MAX_ZONES)

    def allowed_in(self, zone: str) -> bool:
        """Whether proxies of ``zone`` may reach it: every zone when ``zones`` is empty."""
        return not self.zones or zone in self.zones

    def host_names(self) -> list[str]:
        return [e.address for e in self.endpoints if not is_ip(e.address)]


def destination_key(name: str) -> str:
    """The key of the external service ``name`` among destinations and VIPs."""
    return f"{KEY_PREFIX}{name}"


def name_of_key(key: str) -> str | None:
    """``destination_key``'s inverse: the external service's name, or None for a
    service's key."""
    return key[len(KEY_PREFIX):] if key.startswith(KEY_PREFIX) else None


DESCRIPTOR = KindDescriptor(
    name="MeshExternalService",
    spec_model=MeshExternalServiceSpec,
    scope=Scope.MESH,
    path="meshexternalservices",
    noun="meshexternalservice",
    alias="mes",
    sync=SyncDirection.GLOBAL_TO_ZONES,
    description="a destination outside the mesh, called as <name>.extsvc.mesh",
)
