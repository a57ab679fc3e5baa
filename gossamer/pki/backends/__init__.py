"""Certificate authority backends of a mesh: builtin, provided, vault (see ``base``).

``provider_for`` gives the provider of one backend of a mesh; ``mesh_secret_reader`` is
how providers read the mesh's Secrets, ``global_secret_reader`` how the provided backend
reads its CA key, a GlobalSecret, so that the key stays with the control plane that owns
the mesh roots (a missing secret of either kind is ``InvalidCaMaterial`` naming it).

Builtin and provided providers are cheap and built on each call. A vault provider holds a
logged-in client, its connections and the mount's CA chain, so ``provider_for`` keeps one
per manager, mesh and backend configuration and returns it again (a changed configuration
gets a new one, and the one it replaces is closed at once, its threads and connections
released); ``close()`` on it only drops its connections until the next use.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

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
    "VaultProvider", "global_secret_reader", "mesh_secret_reader", "provider_for",
    "validate_provided",
]


# Vault providers by manager, then by (mesh, backend name, backend configuration).
_vault: weakref.WeakKeyDictionary[ResourceManager, dict[tuple[str, str, str], VaultProvider]] = (
    weakref.WeakKeyDictionary())


def mesh_secret_reader(manager: ResourceManager, mesh: str) -> SecretReader:
    """Reads Secrets of ``mesh`` (credentials and certificates: synced to every zone)."""
    return _reader(manager, "Secret", mesh,
                   lambda name: f"secret {name!r} does not exist in mesh {mesh!r}")


def global_secret_reader(manager: ResourceManager) -> SecretReader:
    """Reads GlobalSecrets (never synced): where a provided backend's CA key lives."""
    return _reader(manager, "GlobalSecret", "", lambda name: (
        f"GlobalSecret {name!r} does not exist (a provided CA's key is a GlobalSecret, kept "
        "by the control plane that owns the mesh roots)"))


def _reader(manager: ResourceManager, kind: str, mesh: str,
            missing: Callable[[str], str]) -> SecretReader:
    # A weak reference: a cached provider must not keep its manager (its cache key) alive.
    ref = weakref.ref(manager)

    async def read(name: str) -> bytes:
        manager = ref()
        if manager is None:
            raise CaBackendError("the resource manager of this CA provider is gone")
        try:
            res = await manager.get(kind, name, mesh)
        except NotFound:
            raise InvalidCaMaterial(missing(name)) from None
        if not isinstance(res.spec, SecretSpec):
            raise TypeError(f"{kind} {name} has a {type(res.spec).__name__} spec")
        return res.spec.value()
    return read


def provider_for(manager: ResourceManager, mesh: str, backend: CaBackend,
                 generation: int = 0) -> CaProvider:
    """The provider of ``backend`` of ``mesh``; ``generation`` picks a builtin root (the
    other types have one CA each and ignore it)."""
    if backend.type == BackendType.BUILTIN:
        return BuiltinProvider(manager, mesh, backend, generation)
    if backend.type == BackendType.PROVIDED:
        return ProvidedProvider(mesh, backend, mesh_secret_reader(manager, mesh),
                                global_secret_reader(manager))
    providers = _vault.setdefault(manager, {})
    key = (mesh, backend.name, backend.model_dump_json())
    provider = providers.get(key)
    if provider is None:
        for stale in [k for k in providers if k[:2] == key[:2]]:
            # The backend's configuration changed: nothing will ask this cache for the old
            # provider again, so its threads and connection pool would only leak.
            providers.pop(stale).release()
        provider = providers[key] = VaultProvider(mesh, backend,
                                                  mesh_secret_reader(manager, mesh))
    return provider
