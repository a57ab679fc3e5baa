"""MeshTrafficPermission: which sources may open connections to the selected proxies.

Each ``from[]`` item names a set of sources (by their mTLS identity) and an action; Envoy
enforces it with an RBAC network filter on every inbound listener, where ``Deny`` rules
are checked before ``Allow`` and ``AllowWithShadowDeny`` allows but records the deny in
a shadow policy so the effect of a future ``Deny`` can be observed first.

With ``targetRef: {kind: MeshExternalService, name: X}`` it says who may call the
external service X through the zone egress: the egress checks ``from[]`` against the
caller's verified certificate (``zone_egress.envoy``). No sidecar is selected by it.
"""

from __future__ import annotations

import enum
from typing import ClassVar

from pydantic import BaseModel, Field

from gossamer.model.base import KindDescriptor, Scope, SyncDirection
from gossamer.model.fields import SPEC_CONFIG
from gossamer.model.policy import MAX_ITEMS, From, PolicySpec, Rule


class Action(enum.StrEnum):
    ALLOW = "Allow"
    DENY = "Deny"
    ALLOW_WITH_SHADOW_DENY = "AllowWithShadowDeny"


class MeshTrafficPermissionConf(BaseModel):
    model_config = SPEC_CONFIG

    action: Action


class MeshTrafficPermissionSpec(PolicySpec):
    EXTERNAL_TARGET: ClassVar[bool] = True

    from_: list[From[MeshTrafficPermissionConf]] | None = Field(
        None, alias="from", max_length=MAX_ITEMS)
    rules: list[Rule[MeshTrafficPermissionConf]] | None = Field(None, max_length=MAX_ITEMS)


DESCRIPTOR = KindDescriptor(
    name="MeshTrafficPermission",
    spec_model=MeshTrafficPermissionSpec,
    scope=Scope.MESH,
    path="meshtrafficpermissions",
    noun="meshtrafficpermission",
    alias="mtp",
    sync=SyncDirection.GLOBAL_TO_ZONES,
    is_policy=True,
    description="allow or deny inbound traffic by source identity",
)
