"""The root CA of each mesh's enabled backend, as the zone CA and zone-CA signer use it today.

A thin shim over ``gossamer.pki.backends.builtin``: the root of generation 0 of the enabled
backend, kept as GlobalSecret ``ca-<mesh>-<backend>``. ``secret_json`` and
``read_secret_json`` live in ``builtin`` and are re-exported here for the modules that
still import them from this one; the control planes move to ``gossamer.pki.backends``.
"""

from __future__ import annotations

import asyncio
import datetime as dt

from gossamer.model.mesh import BackendType, CaBackend, MeshSpec
from gossamer.pki.backends.builtin import (
    CA_LABEL,
    BuiltinProvider,
    read_secret_json,
    secret_json,
)
from gossamer.pki.certs import KeyPair
from gossamer.resources import ResourceManager

__all__ = ["CA_LABEL", "ROOT_LIFETIME", "MeshRoots", "read_secret_json", "secret_json"]

ROOT_LIFETIME = dt.timedelta(days=3650)


class MeshRoots:
    def __init__(self, manager: ResourceManager) -> None:
        self._manager = manager
        self._providers: dict[tuple[str, str], BuiltinProvider] = {}
        self._lock = asyncio.Lock()

    async def mesh(self, mesh: str) -> MeshSpec:
        res = await self._manager.get("Mesh", mesh)
        if not isinstance(res.spec, MeshSpec):
            raise TypeError(f"Mesh {mesh} has a {type(res.spec).__name__} spec")
        return res.spec

    async def root(self, mesh: str) -> KeyPair:
        spec = await self.mesh(mesh)
        enabled = spec.mtls.enabled() if spec.mtls else None
        if enabled is None or enabled.type != BackendType.BUILTIN:
            # Not builtin (or none): a builtin-style root under the enabled backend's name,
            # as before the other backends existed.
            enabled = CaBackend(name=enabled.name if enabled else "none",
                                type=BackendType.BUILTIN)
        key = (mesh, enabled.name)
        async with self._lock:
            provider = self._providers.get(key)
            if provider is None:
                provider = self._providers[key] = BuiltinProvider(self._manager, mesh, enabled)
        return await provider.root_pair()
