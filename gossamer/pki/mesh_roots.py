"""The root CA of each mesh, kept by the control plane that owns it.

A builtin root is made the first time a mesh needs one (ECDSA P-256, ten years) and kept
as a GlobalSecret ``ca-<mesh>-<backend>`` — a kind that never leaves the control plane
holding it: the global in a federation, the zone itself when it is standalone.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json

from gossamer.errors import NotFound
from gossamer.model.base import Resource
from gossamer.model.mesh import MeshSpec
from gossamer.model.secret import SecretSpec
from gossamer.pki.certs import KeyPair, new_root_ca
from gossamer.resources import ResourceManager

ROOT_LIFETIME = dt.timedelta(days=3650)
CA_LABEL = "gossamer.io/ca"


def secret_json(name: str, labels: dict[str, str], data: dict[str, str]) -> Resource:
    blob = json.dumps(data, sort_keys=True).encode()
    return Resource(type="GlobalSecret", name=name, labels=labels,
                    spec=SecretSpec(data=base64.b64encode(blob).decode()))


async def read_secret_json(manager: ResourceManager, name: str) -> dict[str, str] | None:
    try:
        res = await manager.get("GlobalSecret", name)
    except NotFound:
        return None
    if not isinstance(res.spec, SecretSpec):
        raise TypeError(f"GlobalSecret {name} has a foreign spec")
    data = json.loads(res.spec.value())
    return {str(k): str(v) for k, v in data.items()}


class MeshRoots:
    def __init__(self, manager: ResourceManager) -> None:
        self._manager = manager
        self._cache: dict[tuple[str, str], KeyPair] = {}
        self._lock = asyncio.Lock()

    async def mesh(self, mesh: str) -> MeshSpec:
        res = await self._manager.get("Mesh", mesh)
        if not isinstance(res.spec, MeshSpec):
            raise TypeError(f"Mesh {mesh} has a {type(res.spec).__name__} spec")
        return res.spec

    async def root(self, mesh: str) -> KeyPair:
        spec = await self.mesh(mesh)
        backend = spec.mtls.enabled_backend if spec.mtls and spec.mtls.enabled_backend else "none"
        key = (mesh, backend)
        async with self._lock:
            if key not in self._cache:
                self._cache[key] = await self._load_or_create(mesh, backend)
        return self._cache[key]

    async def _load_or_create(self, mesh: str, backend: str) -> KeyPair:
        name = f"ca-{mesh}-{backend}"
        stored = await read_secret_json(self._manager, name)
        if stored is not None:
            return KeyPair.from_pem(stored["cert"].encode(), stored["key"].encode())
        root = new_root_ca(f"Gossamer mesh {mesh}", dt.datetime.now(dt.UTC), ROOT_LIFETIME,
                           path_length=1)
        await self._manager.apply(secret_json(name, {CA_LABEL: mesh}, {
            "cert": root.cert_pem().decode(), "key": root.key_pem().decode()}))
        return root
