"""Mesh: a tenancy boundary with its own CA, identities and policies.

``mtls.backends`` lists the certificate authorities the mesh may use (``builtin``: a
root generated at the global; ``provided``: a CA the platform team brings, its certificate
in a Secret of the mesh and its key in a GlobalSecret; ``vault``: Vault's PKI engine);
``mtls.enabledBackend`` names the one in use, and ``mtls.mode`` says whether sidecars
require mTLS on inbound traffic (``strict``) or also accept plaintext (``permissive``, for
migrating workloads in). ``networking.outbound.passthrough`` (default true) says whether
a transparent sidecar forwards captured traffic to destinations outside the mesh to their
original address, or closes it. ``routing.zonePinnedNames`` (default false) gives every
service a name per zone serving it, ``<service>.svc.<zone>.mesh``, beside
``<service>.mesh`` (``zone_cp.mesh_dns``). ``routing.zoneEgress`` sends the sidecars'
traffic to external services (``externalServices``) and to other zones (``crossZone``)
through their zone's egress; ``true`` means both, as in Kuma (``zone_egress``).
"""

from __future__ import annotations

import enum

from pydantic import BaseModel, Field, StrictBool, model_validator

from gossamer.model.base import KindDescriptor, Scope, SyncDirection
from gossamer.model.fields import SPEC_CONFIG, Duration, Name, validate_nested


class BackendType(enum.StrEnum):
    BUILTIN = "builtin"
    PROVIDED = "provided"
    VAULT = "vault"


class MtlsMode(enum.StrEnum):
    STRICT = "strict"
    PERMISSIVE = "permissive"


class SecretRef(BaseModel):
    """Where a piece of CA material comes from: a secret named by ``secretRef`` (which kind
    of secret depends on the field, see ``ProvidedConf``), or ``inline`` PEM."""

    model_config = SPEC_CONFIG

    secret_ref: Name | None = None
    inline: str | None = Field(None, max_length=65536)

    @model_validator(mode="after")
    def _one(self) -> SecretRef:
        if (self.secret_ref is None) == (self.inline is None):
            raise ValueError("exactly one of secretRef or inline is required")
        return self


class CaCertConf(BaseModel):
    model_config = SPEC_CONFIG

    key_type: str = Field("ecdsa-p256", pattern=r"^(ecdsa-p256|ecdsa-p384|rsa-2048|rsa-4096)$")
    expiration: Duration = "87600h"


class BuiltinConf(BaseModel):
    model_config = SPEC_CONFIG

    ca_cert: CaCertConf = Field(default_factory=CaCertConf)


class ProvidedConf(BaseModel):
    """A CA the platform team brings.

    ``cert``: the CA certificate and its issuers up to the root; public, so a Secret of the
    mesh (synced to every zone) or inline. ``key``: its private key, which must never leave
    the control plane that owns the mesh roots: ``secretRef`` names a GlobalSecret (never
    synced; the global's, or a standalone zone's own). An inline key is refused on apply
    (``gossamer.pki.backends.validation``): the Mesh is copied to every zone and returned
    by GET, and the key with it.
    """

    model_config = SPEC_CONFIG

    cert: SecretRef
    key: SecretRef


class VaultTokenAuth(BaseModel):
    model_config = SPEC_CONFIG
    secret_ref: Name


class VaultTlsAuth(BaseModel):
    model_config = SPEC_CONFIG
    client_cert_secret_ref: Name
    client_key_secret_ref: Name


class VaultAppRoleAuth(BaseModel):
    model_config = SPEC_CONFIG
    role_id: str = Field(max_length=256)
    secret_id: VaultTokenAuth
    mount: str = Field("approle", max_length=256)


class VaultAuth(BaseModel):
    model_config = SPEC_CONFIG

    token: VaultTokenAuth | None = None
    tls: VaultTlsAuth | None = None
    app_role: VaultAppRoleAuth | None = Field(None, alias="approle")

    @model_validator(mode="after")
    def _one(self) -> VaultAuth:
        if sum(x is not None for x in (self.token, self.tls, self.app_role)) != 1:
            raise ValueError("exactly one of token, tls or approle is required")
        return self


class VaultTls(BaseModel):
    model_config = SPEC_CONFIG

    ca_cert_secret_ref: Name | None = None
    server_name: str | None = Field(None, max_length=253)
    skip_verify: bool = False


class VaultConf(BaseModel):
    """Vault's (or OpenBao's) PKI engine: ``address`` is https:// (``insecureHttp: true``
    allows http:// for local development only), ``pki`` the mount, ``role`` its role."""

    model_config = SPEC_CONFIG

    address: str = Field(pattern=r"^https?://[^\s/]+(/.*)?$", max_length=2048)
    pki: str = Field(pattern=r"^[a-zA-Z0-9_\-/]+$", max_length=256)
    role: str = Field(pattern=r"^[a-zA-Z0-9_\-]+$", max_length=256)
    mode: str = Field("intermediate", pattern=r"^(intermediate|issue)$")
    namespace: str | None = Field(None, max_length=256)
    auth: VaultAuth
    tls: VaultTls | None = None
    # Allow an http:// address. For local development only: the token or AppRole secret
    # ID, and every CSR and certificate, would cross the network in clear.
    insecure_http: bool = False

    @model_validator(mode="after")
    def _https(self) -> VaultConf:
        if self.address.startswith("http://") and not self.insecure_http:
            raise ValueError(
                f"address {self.address!r} is plain HTTP: the Vault token or AppRole secret "
                "ID would be sent in clear; use https://, or set insecureHttp: true (for "
                "local development only)")
        return self


class DpCertRotation(BaseModel):
    model_config = SPEC_CONFIG
    expiration: Duration = "24h"


class DpCert(BaseModel):
    model_config = SPEC_CONFIG
    rotation: DpCertRotation = Field(default_factory=DpCertRotation)


_CONF_MODELS: dict[BackendType, type[BaseModel]] = {
    BackendType.BUILTIN: BuiltinConf,
    BackendType.PROVIDED: ProvidedConf,
    BackendType.VAULT: VaultConf,
}


class CaBackend(BaseModel):
    model_config = SPEC_CONFIG

    name: Name
    type: BackendType
    dp_cert: DpCert = Field(default_factory=DpCert)
    conf: BuiltinConf | ProvidedConf | VaultConf | None = None

    @model_validator(mode="before")
    @classmethod
    def _conf_by_type(cls, data: object) -> object:
        # The conf's shape depends on `type`: validate it against that one model so the
        # error names the right fields instead of three unions' worth of complaints.
        if isinstance(data, dict):
            kind = data.get("type")
            conf = data.get("conf")
            if kind in _CONF_MODELS and not isinstance(conf, BaseModel):
                model = _CONF_MODELS[BackendType(kind)]
                data = {**data, "conf": validate_nested(model, conf or {}, "conf")}
        return data


class Mtls(BaseModel):
    model_config = SPEC_CONFIG

    enabled_backend: Name | None = None
    mode: MtlsMode = MtlsMode.STRICT
    backends: list[CaBackend] = Field(default_factory=list, max_length=16)

    @model_validator(mode="after")
    def _backends(self) -> Mtls:
        names = [b.name for b in self.backends]
        if len(set(names)) != len(names):
            raise ValueError("backend names must be unique")
        if self.enabled_backend and self.enabled_backend not in names:
            raise ValueError(f"enabledBackend {self.enabled_backend!r} is not one of the backends")
        return self

    def enabled(self) -> CaBackend | None:
        return next((b for b in self.backends if b.name == self.enabled_backend), None)


class MeshOutbound(BaseModel):
    model_config = SPEC_CONFIG

    # Captured connections to a destination that is no mesh service: forwarded to their
    # original address (true), or closed (false), as Kuma's field does.
    passthrough: StrictBool = True


class MeshNetworking(BaseModel):
    model_config = SPEC_CONFIG

    outbound: MeshOutbound = Field(default_factory=MeshOutbound)


class ZoneEgressRouting(BaseModel):
    """Which traffic leaves a zone through its egress (``zone_egress``): calls to
    MeshExternalServices, and calls to other zones' ingresses (mTLS passed through)."""

    model_config = SPEC_CONFIG

    external_services: StrictBool = True
    cross_zone: StrictBool = False


class MeshRouting(BaseModel):
    model_config = SPEC_CONFIG

    # ``true``: external services and cross-zone traffic both through the zone egress
    # (Kuma's meaning of ``zoneEgress: true``); an object chooses each.
    zone_egress: StrictBool | ZoneEgressRouting = False

    # ``<service>.svc.<zone>.mesh`` for every zone that serves a service: a VIP of its
    # own whose traffic goes to that zone's instances only. Off by default: each such
    # name is one more VIP, listener and cluster on every sidecar of the zone.
    zone_pinned_names: StrictBool = False


class MeshSpec(BaseModel):
    model_config = SPEC_CONFIG

    mtls: Mtls | None = None
    networking: MeshNetworking | None = None
    routing: MeshRouting | None = None

    @property
    def passthrough(self) -> bool:
        return self.networking is None or self.networking.outbound.passthrough

    @property
    def zone_pinned_names(self) -> bool:
        return self.routing is not None and self.routing.zone_pinned_names

    @property
    def egress(self) -> ZoneEgressRouting:
        """What goes through the zone egress (nothing when ``zoneEgress`` is off)."""
        value = self.routing.zone_egress if self.routing is not None else False
        if isinstance(value, ZoneEgressRouting):
            return value
        return ZoneEgressRouting(external_services=value, cross_zone=value)


DESCRIPTOR = KindDescriptor(
    name="Mesh",
    spec_model=MeshSpec,
    scope=Scope.GLOBAL,
    path="meshes",
    noun="mesh",
    alias="mesh",
    sync=SyncDirection.GLOBAL_TO_ZONES,
    spec_inline=True,
    description="a mesh: its certificate authorities and mTLS mode",
)
