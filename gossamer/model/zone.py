"""Zone: one federated zone control plane, created at the global on first connect.

``enabled: false`` refuses the zone's sync streams and drops its resources from what
other zones receive, without deleting anything.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel

from gossamer.model.base import KindDescriptor, Resource, Scope, SyncDirection
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


def is_enabled(zone: Resource) -> bool:
    """False only for a Zone whose spec says ``enabled: false``."""
    return not isinstance(zone.spec, ZoneSpec) or zone.spec.enabled


def disabled_zones(zones: Iterable[Resource]) -> set[str]:
    """The names of the disabled Zones among ``zones``: the one definition that the
    global's sync server, the mesh CA controller and a zone's mesh state share."""
    return {z.name for z in zones if not is_enabled(z)}
