"""Zone: one federated zone control plane, created at the global on first connect.

``enabled: false`` refuses the zone's sync streams and drops its resources from what
other zones receive, without deleting anything.
"""

from __future__ import annotations

from pydantic import BaseModel

from gossamer.model.base import KindDescriptor, Scope, SyncDirection
from gossamer.model.fields import SPEC_CONFIG


class ZoneSpec(BaseModel):
    model_config = SPEC_CONFIG

    enabled: bool = True


DESCRIPTOR = KindDescriptor(
    name="Zone",
    spec_model=ZoneSpec,
    scope=Scope.GLOBAL,
    path="zones",
    noun="zone",
    alias="zone",
    sync=SyncDirection.LOCAL,
    spec_inline=True,
    description="a zone control plane and whether it may connect",
)
