"""ZoneInsight: one global replica's view of one zone's sync streams, stored.

Each global replica counts what crosses the streams it serves (``global_cp.insights``) and
stores its view of each zone as one ZoneInsight (named ``<zone>.<replica>``), at most once
per ``global_cp.insights.PUBLISH_INTERVAL`` per zone and at once when a stream comes or
goes. ``inspect zones``, ``/_check`` and ``/metrics`` on any replica merge every replica's
record, so each answers the same: a zone is online while a fresh record (``reportedAt``
newer than the staleness bound) has a stream; a replica that died leaves a record that
goes stale, never a zone that looks online forever.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from gossamer.model.base import KindDescriptor, Scope, SyncDirection
from gossamer.model.fields import SPEC_CONFIG, Name

MAX_TYPES = 64


class Counts(BaseModel):
    model_config = SPEC_CONFIG

    sent: int = Field(0, ge=0)
    acked: int = Field(0, ge=0)
    nacked: int = Field(0, ge=0)
    received: int = Field(0, ge=0)
    refused: int = Field(0, ge=0)


class ZoneInsightSpec(BaseModel):
    model_config = SPEC_CONFIG

    zone: Name
    replica: str = Field(max_length=253)
    reported_at: float = Field(ge=0)  # unix seconds, the replica's clock
    streams: int = Field(0, ge=0)
    connected_at: float | None = None
    disconnected_at: float | None = None
    last_update: float | None = None
    version: str = Field("", max_length=128)
    last_error: str = Field("", max_length=2000)
    by_type: dict[str, Counts] = Field(default_factory=dict, max_length=MAX_TYPES)


DESCRIPTOR = KindDescriptor(
    name="ZoneInsight",
    spec_model=ZoneInsightSpec,
    scope=Scope.GLOBAL,
    path="zone-insights",
    noun="zoneinsight",
    alias="zinsight",
    sync=SyncDirection.LOCAL,
    system=True,
    description="one global replica's view of a zone's sync streams (merged by inspect zones)",
)
