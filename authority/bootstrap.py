"""What a control plane that owns its meshes (the global, or a standalone zone) creates
on its first start: the ``default`` mesh.

``default`` has builtin mTLS enabled and an allow-all MeshTrafficPermission, so a new
installation works before anyone writes policy. Both are ordinary resources: delete or
change them like any other. They are created only into a store that has never been
written (revision 0), so a deleted ``default`` does not come back on restart.
"""

from __future__ import annotations

import logging

from gossamer.model.registry import parse_document
from gossamer.resources import ResourceManager

log = logging.getLogger(__name__)

DEFAULT_MESH = {
    "type": "Mesh",
    "name": "default",
    "mtls": {
        "enabledBackend": "ca-1",
        "mode": "strict",
        "backends": [{"name": "ca-1", "type": "builtin"}],
    },
}

ALLOW_ALL = {
    "type": "MeshTrafficPermission",
    "name": "allow-all",
    "mesh": "default",
    "spec": {
        "targetRef": {"kind": "Mesh"},
        "from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}],
    },
}


async def bootstrap(manager: ResourceManager) -> bool:
    """Create the default mesh if the store is new; True if it did."""
    if await manager.store.revision() != 0:
        return False
    for doc in (DEFAULT_MESH, ALLOW_ALL):
        await manager.apply(parse_document(doc, manager.registry))
    log.info("created mesh 'default' with builtin mTLS and an allow-all traffic permission")
    return True
