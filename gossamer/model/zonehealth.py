"""ZoneHealth: what one zone CP sees of its own health, for ``gossamer check`` at the global.

Each federated zone CP publishes one (named after the zone; the global stores it under the
zone's hashed name with the zone label, like every zone-owned kind) when its sync link
comes up and then every ``zone_cp.health_report.INTERVAL``. It carries what only the zone
can see: its own clock (``reportedAt``, which the global compares with its own on receipt
for the clock skew), the zone token it dials with (id and expiry, never the token), whether
each other zone's ingress accepted a TCP connection from this zone CP, the sidecars whose
Envoy NACKs their config, workload certificates past their renewal point, and sidecars
that can reach ``.mesh`` VIPs neither by listener nor by transparent proxy. Lists are
bounded (``MAX_ITEMS``) and ``truncated`` says when some were left out.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from gossamer.model.base import KindDescriptor, Scope, SyncDirection
from gossamer.model.fields import SPEC_CONFIG, Name

MAX_ITEMS = 100


class IngressProbe(BaseModel):
    """One other zone's ingress as this zone CP dialled it (TCP connect, bounded)."""

    model_config = SPEC_CONFIG

    zone: str = Field("", max_length=253)
    name: str = Field(max_length=253)
    address: str = Field(max_length=253)
    port: int = Field(ge=0, le=65535)
    reachable: bool
    error: str = Field("", max_length=1000)


class ProxyProblem(BaseModel):
    """One sidecar with something wrong: what (``detail``) and, when known, the fix."""

    model_config = SPEC_CONFIG

    mesh: str = Field(max_length=253)
    name: str = Field(max_length=253)
    detail: str = Field("", max_length=2000)
    hint: str = Field("", max_length=1000)


class ZoneHealthSpec(BaseModel):
    model_config = SPEC_CONFIG

    zone: Name
    reported_at: str = Field(max_length=64)  # the zone's clock, ISO 8601 with offset
    token_id: str = Field("", max_length=128)
    token_expires_at: int = Field(0, ge=0)  # unix seconds; 0: unknown (no token file)
    ingresses: list[IngressProbe] = Field(default_factory=list, max_length=MAX_ITEMS)
    dataplanes: int = Field(0, ge=0)
    online: int = Field(0, ge=0)
    nacking: list[ProxyProblem] = Field(default_factory=list, max_length=MAX_ITEMS)
    certificates: list[ProxyProblem] = Field(default_factory=list, max_length=MAX_ITEMS)
    no_vip_path: list[ProxyProblem] = Field(default_factory=list, max_length=MAX_ITEMS)
    truncated: bool = False


DESCRIPTOR = KindDescriptor(
    name="ZoneHealth",
    spec_model=ZoneHealthSpec,
    scope=Scope.GLOBAL,
    path="zone-healths",
    noun="zonehealth",
    alias="zh",
    sync=SyncDirection.ZONE_TO_GLOBAL,
    system=True,
    description="one zone's view of its own health: clock, zone token, other zones' "
                "ingresses, NACKing proxies, expiring certificates",
)
