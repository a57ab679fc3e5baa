"""Which mesh Secrets are Vault credentials that no zone uses, and so never leave the global.

A vault backend logs in with credentials held in Secrets of its mesh (``auth.token``,
``auth.approle.secretId``, ``auth.tls`` client certificate and key). Secrets sync to every
zone, but only a zone that calls Vault needs them, and a zone calls Vault only when a
vault backend in ``issue`` mode signs, or is about to sign, its sidecars' certificates.
The backends that sign or are about to: the Mesh's ``enabledBackend`` (the one a rotation
moves to), and the ``MeshTrust``'s ``signer`` and ``incoming`` (during a rotation the old
CA still signs while ``enabledBackend`` already names the new one). In ``intermediate``
mode only the global talks to Vault.

So a Secret is withheld from the zones when some vault backend of its mesh names it as a
credential and no backend that signs or is about to sign in ``issue`` mode does. A
Secret named by nothing, or only as Vault's CA certificate (public), is sent as before.
Pure: meshes and trusts in, names out; the sync server asks again when either changes.
"""

from __future__ import annotations

from collections.abc import Iterable

from gossamer.model.base import Resource
from gossamer.model.mesh import CaBackend, MeshSpec, VaultConf
from gossamer.model.meshtrust import MeshTrustSpec


def vault_credentials(backend: CaBackend) -> set[str]:
    """The Secret names a vault backend logs in with (empty for other backends)."""
    conf = backend.conf
    if not isinstance(conf, VaultConf):
        return set()
    auth = conf.auth
    names = set()
    if auth.token is not None:
        names.add(auth.token.secret_ref)
    if auth.app_role is not None:
        names.add(auth.app_role.secret_id.secret_ref)
    if auth.tls is not None:
        names |= {auth.tls.client_cert_secret_ref, auth.tls.client_key_secret_ref}
    return names


def _in_use(spec: MeshSpec, trust: MeshTrustSpec | None) -> set[str]:
    """The backends that sign, or are about to sign, for the mesh."""
    names = {spec.mtls.enabled_backend} if spec.mtls and spec.mtls.enabled_backend else set()
    if trust is not None:
        names.add(trust.signer.backend)
        if trust.incoming is not None:
            names.add(trust.incoming.backend)
    return names


def withheld_secrets(meshes: Iterable[Resource],
                     trusts: Iterable[Resource]) -> set[tuple[str, str]]:
    """(mesh, secret name) of every Vault credential no zone uses (module docstring)."""
    by_mesh = {t.name: t.spec for t in trusts if isinstance(t.spec, MeshTrustSpec)}
    withheld: set[tuple[str, str]] = set()
    for mesh in meshes:
        spec = mesh.spec
        if not isinstance(spec, MeshSpec) or spec.mtls is None:
            continue
        in_use = _in_use(spec, by_mesh.get(mesh.name))
        credentials, needed = set(), set()
        for backend in spec.mtls.backends:
            names = vault_credentials(backend)
            credentials |= names
            conf = backend.conf
            if backend.name in in_use and isinstance(conf, VaultConf) and conf.mode == "issue":
                needed |= names
        withheld |= {(mesh.name, name) for name in credentials - needed}
    return withheld
