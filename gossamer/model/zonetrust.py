"""ZoneTrustStatus: how far one zone has got with its mesh's trust bundle and certificates.

Each zone CP publishes one per mesh (named after the mesh; the global stores it under the
zone's hashed name with the zone label, like every zone-owned kind). The control plane
that drives a CA rotation (``MeshTrust``) advances only when every zone reports that all
its sidecars serve the current bundle, and finishes only when no certificate in any zone
chains to the retiring roots.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from gossamer.model.base import KindDescriptor, Scope, SyncDirection
from gossamer.model.fields import SPEC_CONFIG, Name


class ZoneTrustStatusSpec(BaseModel):
    model_config = SPEC_CONFIG

    zone: Name
    mesh: Name
    # The digest of the MeshTrust bundle this zone distributes (``bundle_digest``).
    bundle_digest: str = Field("", max_length=64)
    # Sidecars connected now, and how many of them serve that bundle to Envoy.
    dataplanes: int = Field(0, ge=0)
    dataplanes_with_bundle: int = Field(0, ge=0)
    # Workload certificates held by connected sidecars, counted by the root fingerprint
    # they chain to ("unknown" for none of the bundle's roots, "pending" for no
    # certificate reported yet).
    certificates: dict[str, int] = Field(default_factory=dict, max_length=16)
    # The root fingerprint the zone's intermediate for this mesh chains to ("" if none,
    # or if the mesh's CA issues workload certificates itself).
    intermediate_root: str = Field("", max_length=64)
    # Why the zone cannot issue certificates right now ("" when it can).
    issuance_error: str = Field("", max_length=4096)
    updated_at: str = Field("", max_length=64)


DESCRIPTOR = KindDescriptor(
    name="ZoneTrustStatus",
    spec_model=ZoneTrustStatusSpec,
    scope=Scope.GLOBAL,
    path="zone-trust-statuses",
    noun="zonetruststatus",
    alias="ztrust",
    sync=SyncDirection.ZONE_TO_GLOBAL,
    system=True,
    description="one zone's progress with its mesh's trust bundle and certificates",
)
