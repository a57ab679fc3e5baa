"""Is each mesh's CA backend up? A live ``check()`` of every mesh's enabled backend.

What ``gossamer check`` asks of the control plane that owns a mesh's roots (the global,
or a standalone zone). ``CaProvider.check`` logs in to Vault and reads the mount's CA chain
(and the signing path it will use), reads a provided CA's secrets, or loads the builtin
root, so a stopped Vault, a revoked Vault token or a missing secret shows here before the
next certificate is due. Each check is bounded (``TIMEOUT``) and checks run concurrently;
a failing backend is a result with its reason, never an exception.
"""

from __future__ import annotations

import asyncio
from typing import Any

from authority.mesh_ca import enabled_backend
from gossamer.errors import GossamerError
from gossamer.model.base import Resource
from gossamer.model.mesh import MeshSpec
from gossamer.pki.backends import provider_for
from gossamer.resources import ResourceManager

TIMEOUT = 10.0


async def _check_one(manager: ResourceManager, mesh: Resource) -> dict[str, Any]:
    assert isinstance(mesh.spec, MeshSpec)
    backend = enabled_backend(mesh.spec)
    item: dict[str, Any] = {"mesh": mesh.name, "backend": backend.name,
                            "type": str(backend.type), "ok": True, "error": ""}
    try:
        async with asyncio.timeout(TIMEOUT):
            await provider_for(manager, mesh.name, backend).check()
    except TimeoutError:
        item.update(ok=False, error=f"no answer within {TIMEOUT:g}s")
    except GossamerError as exc:
        item.update(ok=False, error=exc.detail[:1000])
    return item


async def backend_health(manager: ResourceManager) -> list[dict[str, Any]]:
    """One item per mesh: its enabled backend, ``ok``, and ``error`` when not."""
    meshes = (await manager.list("Mesh")).items
    return list(await asyncio.gather(*(_check_one(manager, m) for m in meshes)))
