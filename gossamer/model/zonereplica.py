"""ZoneCpReplica: one zone CP replica's heartbeat and what its sidecars serve, stored.

Replicas of a zone CP on one PostgreSQL store (``zone_cp.replicas``) each keep one
record, named after the replica's stable id (``<zone>.<hash>``), written every few
seconds and whenever the census of its sidecars changes. The zone's leader reads them
all: the certificate authority's keeper adds their censuses into the zone's one
``ZoneTrustStatus`` per mesh (each replica knows only the sidecars connected to it), and
a replica whose record stops moving is dead, so the leader expires the sidecars
registered through it whose agents did not move to another replica
(``zone_cp.leftovers``). Never synced: it describes this zone's processes only.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from gossamer.model.base import KindDescriptor, Scope, SyncDirection
from gossamer.model.fields import SPEC_CONFIG, Name
from gossamer.model.zonetrust import ZoneTrustStatusSpec

MAX_MESHES = 256


class ZoneCpReplicaSpec(BaseModel):
    model_config = SPEC_CONFIG

    zone: Name
    replica: str = Field(min_length=1, max_length=253)
    # Unix seconds on the replica's clock when it wrote the record. The leader judges
    # liveness by this changing, timed on its own clock, so clock skew cannot kill a
    # replica (``zone_cp.replicas.Liveness``).
    reported_at: float = Field(ge=0)
    # Per mesh, the replica's own view: the sidecars connected to it, and why it cannot
    # issue if it cannot (``ZoneTrustStatus`` without ``updated_at``).
    trust: list[ZoneTrustStatusSpec] = Field(default_factory=list, max_length=MAX_MESHES)


DESCRIPTOR = KindDescriptor(
    name="ZoneCpReplica",
    spec_model=ZoneCpReplicaSpec,
    scope=Scope.GLOBAL,
    path="zone-cp-replicas",
    noun="zonecpreplica",
    alias="zcpr",
    sync=SyncDirection.LOCAL,
    system=True,
    description="one zone CP replica's heartbeat and its sidecars' trust census",
)
