"""MeshTimeout: connect, idle, request and stream timeouts, outbound and inbound."""

from __future__ import annotations

from pydantic import BaseModel, Field

from gossamer.model.base import KindDescriptor, Scope, SyncDirection
from gossamer.model.fields import SPEC_CONFIG, Duration
from gossamer.model.policy import MAX_ITEMS, From, PolicySpec, Rule, To


class HttpTimeouts(BaseModel):
    model_config = SPEC_CONFIG

    request_timeout: Duration | None = None
    stream_idle_timeout: Duration | None = None
    max_stream_duration: Duration | None = None
    max_connection_duration: Duration | None = None
    request_headers_timeout: Duration | None = None


class MeshTimeoutConf(BaseModel):
    model_config = SPEC_CONFIG

    connection_timeout: Duration | None = None
    idle_timeout: Duration | None = None
    http: HttpTimeouts | None = None


class MeshTimeoutSpec(PolicySpec):
    EXTERNAL_DESTINATIONS = True  # proxy.envoy.external applies it
    to: list[To[MeshTimeoutConf]] | None = Field(None, max_length=MAX_ITEMS)
    from_: list[From[MeshTimeoutConf]] | None = Field(None, alias="from", max_length=MAX_ITEMS)
    rules: list[Rule[MeshTimeoutConf]] | None = Field(None, max_length=MAX_ITEMS)


DESCRIPTOR = KindDescriptor(
    name="MeshTimeout",
    spec_model=MeshTimeoutSpec,
    scope=Scope.MESH,
    path="meshtimeouts",
    noun="meshtimeout",
    alias="mt",
    sync=SyncDirection.GLOBAL_TO_ZONES,
    is_policy=True,
    description="connect, idle and HTTP request timeouts",
)
