"""What a federated zone CP may write itself: only the kinds zones own.

Kinds that flow from the global (meshes, policies, secrets) arrive through the sync; a
write of one at the zone's API would be overwritten at the next delta, so it is refused
with a message naming the owner. A standalone zone owns everything.
"""

from __future__ import annotations

from gossamer.errors import Conflict
from gossamer.model.base import KindDescriptor, Resource, SyncDirection
from gossamer.resources import WriteGuard, deny_system


def zone_write_guard(federated: bool) -> WriteGuard:
    if not federated:
        return deny_system

    def guard(desc: KindDescriptor, res: Resource | None) -> None:
        deny_system(desc, res)
        if desc.sync is SyncDirection.GLOBAL_TO_ZONES or desc.name in ("Zone", "GlobalSecret"):
            raise Conflict(f"{desc.name} resources are owned by the global control plane in a "
                           "federated zone: apply them at the global")

    return guard
