"""MeshTCPRoute: split outbound TCP connections to a service across weighted backends.

The destination's outbound listener gets a ``tcp_proxy`` whose ``weighted_clusters``
come from ``backendRefs``. A TCP connection carries nothing to match on, so a route has
exactly one rule; a MeshHTTPRoute for the same destination takes precedence for HTTP.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, model_validator

from gossamer.model.base import KindDescriptor, Scope, SyncDirection
from gossamer.model.fields import SPEC_CONFIG
from gossamer.model.policy import MAX_ITEMS, PolicySpec, TargetRef
from gossamer.model.policy_fields import ROUTE_TO_KINDS, BackendRef, fail_at


class TcpRouteConf(BaseModel):
    model_config = SPEC_CONFIG

    backend_refs: list[BackendRef] = Field(min_length=1, max_length=16)


class TcpRule(BaseModel):
    model_config = SPEC_CONFIG

    default: TcpRouteConf


class TcpRouteTo(BaseModel):
    """One destination service and where its connections go instead."""

    model_config = SPEC_CONFIG

    target_ref: TargetRef
    rules: list[TcpRule] = Field(min_length=1, max_length=1)

    @model_validator(mode="after")
    def _kind(self) -> TcpRouteTo:
        if self.target_ref.kind not in ROUTE_TO_KINDS:
            fail_at(("targetRef", "kind"), "to[].targetRef.kind must be one of "
                                           f"{sorted(k.value for k in ROUTE_TO_KINDS)}")
        return self


class MeshTCPRouteSpec(PolicySpec):
    to: list[TcpRouteTo] | None = Field(None, max_length=MAX_ITEMS)


DESCRIPTOR = KindDescriptor(
    name="MeshTCPRoute",
    spec_model=MeshTCPRouteSpec,
    scope=Scope.MESH,
    path="meshtcproutes",
    noun="meshtcproute",
    alias="mtr",
    sync=SyncDirection.GLOBAL_TO_ZONES,
    is_policy=True,
    description="weighted backends for outbound TCP connections",
)
