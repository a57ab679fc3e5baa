"""Certificate authority backends of a mesh: builtin, provided, vault (see ``base``).

``provider_for`` builds the provider of one backend of a mesh; ``mesh_secret_reader`` is
how providers read the mesh's Secrets (a missing one is ``InvalidCaMaterial`` naming it).
"""

from __future__ import annotations

from gossamer.errors import NotFound
from gossamer.model.mesh import BackendType, CaBackend
from gossamer.model.secret import SecretSpec
from gossamer.pki.backends.base import (
    CaBackendError,
    CaProvider,
    CaRefused,
    CaUnreachable,
    InvalidCaMaterial,
    LocalCa,
    SecretReader,
    SignedChain,
)
from gossamer.pki.backends.builtin import BuiltinProvider
from gossamer.pki.backends.provided import ProvidedProvider, validate_provided
from gossamer.pki.backends.vault import VaultProvider
from gossamer.resources import ResourceManager

__all__ = [
    "BuiltinProvider", "CaBackendError", "CaProvider", "CaRefused", "CaUnreachable",
    "InvalidCaMaterial", "LocalCa", "ProvidedProvider", "SecretReader", "SignedChain",
    "VaultProvider", "mesh_secret_reader", "provider_for", "validate_provided",
]


def mesh_secret_reader(manager: ResourceManager, mesh: str) -> SecretReader:
    async def read(name: str) -> bytes:
        try:
            res = await manager.get("Secret", name, mesh)
        except NotFound:
            raise InvalidCaMaterial(f"secret {name!r} does not exist in mesh {mesh!r}") from None
        if not isinstance(res.spec, SecretSpec):
            raise TypeError(f"Secret {name} has a {type(res.spec).__name__} spec")
        return res.spec.value()
    return read


def provider_for(manager: ResourceManager, mesh: str, backend: CaBackend,
                 generation: int = 0) -> CaProvider:
    """The provider of ``backend`` of ``mesh``; ``generation`` picks a builtin root (the
    other types have one CA each and ignore it)."""
    if backend.type == BackendType.BUILTIN:
        return BuiltinProvider(manager, mesh, backend, generation)
    if backend.type == BackendType.PROVIDED:
        return ProvidedProvider(mesh, backend, mesh_secret_reader(manager, mesh))
    return VaultProvider(mesh, backend, mesh_secret_reader(manager, mesh))
