"""Apply-time checks of a mesh's CA material: refuse a write that would break a backend.

``ca_checks()`` gives the ``ResourceManager`` two checks:

* a Mesh: each ``provided`` backend that is new, changed or newly enabled must have its
  cert (a Secret of that mesh, or inline) and its key (a GlobalSecret: never inline, which
  would copy the key into every zone) and pass ``validate_provided``; each such ``vault``
  backend's Secrets must exist, and its CA and client certificate must be PEM. Backends
  the write leaves as they were are not judged again, so a mesh can always switch away
  from a backend whose material went bad;
* a Secret that a ``provided`` backend of its mesh uses as cert, or a GlobalSecret that a
  ``provided`` backend of any mesh uses as key: the new bytes must pass
  ``validate_provided`` with the other half as it is (or as the same batch has it).

A refusal is an ``InvalidResource`` with one ``FieldError`` per problem, at the path of the
field to fix (``mtls.backends[1].conf.cert``); nothing is stored. The server is not asked
anything here (an apply must not hang on a Vault that does not answer): whether Vault
accepts the credentials is for ``CaProvider.check()``, which the rotation runs first.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

from gossamer.errors import FieldError, InvalidResource, NotFound
from gossamer.model.base import Resource
from gossamer.model.mesh import CaBackend, MeshSpec, ProvidedConf, SecretRef, VaultConf
from gossamer.model.secret import SecretSpec
from gossamer.pki.backends.base import InvalidCaMaterial
from gossamer.pki.backends.provided import load_certificates, load_private_key, validate_provided
from gossamer.resources import ApplyCheck, Batch, ResourceManager

Clock = Callable[[], dt.datetime]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def ca_checks(clock: Clock = _utcnow) -> Sequence[ApplyCheck]:
    """The checks to pass as ``ResourceManager(..., checks=ca_checks())``."""

    async def mesh_check(manager: ResourceManager, res: Resource, batch: Batch) -> None:
        await check_mesh(manager, res, batch, clock())

    async def secret_check(manager: ResourceManager, res: Resource, batch: Batch) -> None:
        await check_secret(manager, res, batch, clock())  # a Secret or a GlobalSecret

    return (mesh_check, secret_check)


# -- a Mesh -------------------------------------------------------------------------------


async def check_mesh(manager: ResourceManager, res: Resource, batch: Batch,
                     now: dt.datetime) -> None:
    if res.type != "Mesh" or not isinstance(res.spec, MeshSpec) or res.spec.mtls is None:
        return
    old_backends, old_enabled = await _stored_backends(manager, res.name)
    mtls = res.spec.mtls
    errors: list[FieldError] = []
    for i, backend in enumerate(mtls.backends):
        newly_enabled = mtls.enabled_backend == backend.name != old_enabled
        if old_backends.get(backend.name) == backend and not newly_enabled:
            continue
        at = f"mtls.backends[{i}].conf"
        if isinstance(backend.conf, ProvidedConf):
            errors += await _provided_errors(manager, res.name, backend.conf, at, batch, now)
        elif isinstance(backend.conf, VaultConf):
            errors += await _vault_errors(manager, res.name, backend.conf, at, batch)
    if errors:
        raise InvalidResource(f"mesh {res.name!r}: a CA backend cannot work", errors)


async def _stored_backends(manager: ResourceManager,
                           mesh: str) -> tuple[dict[str, CaBackend], str | None]:
    try:
        stored = (await manager.get("Mesh", mesh)).spec
    except NotFound:
        return {}, None
    if not isinstance(stored, MeshSpec) or stored.mtls is None:
        return {}, None
    return {b.name: b for b in stored.mtls.backends}, stored.mtls.enabled_backend


async def _provided_errors(manager: ResourceManager, mesh: str, conf: ProvidedConf, at: str,
                           batch: Batch, now: dt.datetime) -> list[FieldError]:
    errors: list[FieldError] = []
    cert = await _ref_bytes(manager, mesh, conf.cert, batch)
    if cert is None:
        errors.append(FieldError(f"{at}.cert", _missing(conf.cert, mesh)))
    key = None
    if conf.key.inline is not None:
        errors.append(FieldError(f"{at}.key.inline", INLINE_KEY))
    else:
        key = await _key_bytes(manager, conf.key, batch)
        if key is None:
            errors.append(FieldError(f"{at}.key", await _missing_key(manager, mesh, conf.key,
                                                                     batch)))
    if cert is None or key is None:
        return errors
    try:
        validate_provided(cert, key, now)
    except InvalidCaMaterial as exc:
        return [FieldError(f"{at}.{exc.part}" if exc.part else at, exc.detail)]
    return []


async def _vault_errors(manager: ResourceManager, mesh: str, conf: VaultConf, at: str,
                        batch: Batch) -> list[FieldError]:
    refs: list[tuple[str, str, str]] = []   # (path, secret, what it must hold)
    auth = conf.auth
    if auth.token is not None:
        refs.append((f"{at}.auth.token.secretRef", auth.token.secret_ref, "token"))
    if auth.tls is not None:
        refs += [(f"{at}.auth.tls.clientCertSecretRef", auth.tls.client_cert_secret_ref, "cert"),
                 (f"{at}.auth.tls.clientKeySecretRef", auth.tls.client_key_secret_ref, "key")]
    if auth.app_role is not None:
        refs.append((f"{at}.auth.approle.secretId.secretRef",
                     auth.app_role.secret_id.secret_ref, "token"))
    if conf.tls is not None and conf.tls.ca_cert_secret_ref:
        refs.append((f"{at}.tls.caCertSecretRef", conf.tls.ca_cert_secret_ref, "cert"))
    errors: list[FieldError] = []
    for path, name, holds in refs:
        value = await _ref_bytes(manager, mesh, SecretRef(secret_ref=name), batch)
        if value is None:
            errors.append(FieldError(path, _missing(SecretRef(secret_ref=name), mesh)))
            continue
        try:
            if holds == "cert":
                load_certificates(value)
            elif holds == "key":
                load_private_key(value)
            elif not value.strip():
                raise InvalidCaMaterial("the secret is empty")
        except InvalidCaMaterial as exc:
            errors.append(FieldError(path, f"secret {name!r}: {exc.detail}"))
    return errors


# -- a Secret or a GlobalSecret -----------------------------------------------------------


async def check_secret(manager: ResourceManager, res: Resource, batch: Batch,
                       now: dt.datetime) -> None:
    """A Secret is judged as the cert of its mesh's provided backends that name it; a
    GlobalSecret as the key of every mesh's provided backends that name it."""
    if res.type not in ("Secret", "GlobalSecret") or not isinstance(res.spec, SecretSpec):
        return
    as_key = res.type == "GlobalSecret"
    if as_key:
        meshes = await _meshes_as_applied(manager, batch)
    else:
        meshes = await _mesh_as_applied(manager, res.mesh, batch)
    errors: list[FieldError] = []
    for mesh, spec in meshes:
        for backend in spec.mtls.backends if spec.mtls else []:
            conf = backend.conf
            if not isinstance(conf, ProvidedConf):
                continue
            if (conf.key if as_key else conf.cert).secret_ref != res.name:
                continue
            value = res.spec.value()
            cert = await _ref_bytes(manager, mesh, conf.cert, batch) if as_key else value
            key = value if as_key else await _key_bytes(manager, conf.key, batch)
            if cert is None or key is None:
                continue  # the other half is missing: the Mesh check reports that
            try:
                validate_provided(cert, key, now)
            except InvalidCaMaterial as exc:
                errors.append(FieldError("data", f"the {'key' if as_key else 'cert'} of CA "
                                                 f"backend {backend.name!r} of mesh "
                                                 f"{mesh!r}: {exc.detail}"))
    if errors:
        what = "GlobalSecret" if as_key else "secret"
        raise InvalidResource(f"{what} {res.name!r} would break a CA backend", errors)


async def _mesh_as_applied(manager: ResourceManager, mesh: str,
                           batch: Batch) -> list[tuple[str, MeshSpec]]:
    try:
        spec = (await manager.get_as_applied("Mesh", mesh, "", batch)).spec
    except NotFound:
        return []  # the manager refuses a secret without its mesh anyway
    return [(mesh, spec)] if isinstance(spec, MeshSpec) else []


async def _meshes_as_applied(manager: ResourceManager,
                             batch: Batch) -> list[tuple[str, MeshSpec]]:
    """Every Mesh as the batch would leave it: the batch's documents over the store's."""
    meshes = {m.name: m.spec for m in (await manager.list("Mesh")).items}
    meshes |= {res.name: res.spec for (kind, _, _), res in batch.items() if kind == "Mesh"}
    return [(name, spec) for name, spec in sorted(meshes.items())
            if isinstance(spec, MeshSpec)]


# -- helpers ------------------------------------------------------------------------------


async def _ref_bytes(manager: ResourceManager, mesh: str, ref: SecretRef,
                     batch: Batch) -> bytes | None:
    if ref.inline is not None:
        return ref.inline.encode()
    assert ref.secret_ref is not None
    try:
        res = await manager.get_as_applied("Secret", ref.secret_ref, mesh, batch)
    except NotFound:
        return None
    return res.spec.value() if isinstance(res.spec, SecretSpec) else None


async def _key_bytes(manager: ResourceManager, ref: SecretRef, batch: Batch) -> bytes | None:
    """A provided CA's key: a GlobalSecret (inline only in a Mesh stored before that was
    refused)."""
    if ref.inline is not None:
        return ref.inline.encode()
    assert ref.secret_ref is not None
    try:
        res = await manager.get_as_applied("GlobalSecret", ref.secret_ref, "", batch)
    except NotFound:
        return None
    return res.spec.value() if isinstance(res.spec, SecretSpec) else None


def _missing(ref: SecretRef, mesh: str) -> str:
    return (f"secret {ref.secret_ref!r} does not exist in mesh {mesh!r}; apply it first, or "
            "in the same batch")


async def _missing_key(manager: ResourceManager, mesh: str, ref: SecretRef,
                       batch: Batch) -> str:
    text = (f"GlobalSecret {ref.secret_ref!r} does not exist; apply it first, or in the same "
            "batch (a provided CA's key is a GlobalSecret: it never leaves the control plane "
            "that owns the mesh roots)")
    if await _ref_bytes(manager, mesh, ref, batch) is not None:
        text += (f"; secret {ref.secret_ref!r} of mesh {mesh!r} is not read for the key: "
                 "store the key as a GlobalSecret and delete that Secret, which is copied "
                 "to every zone")
    return text


INLINE_KEY = ("a provided CA's private key may not be inline: the Mesh is copied to every "
              "zone and returned by GET, and the key would be too; store it in a GlobalSecret "
              "(never synced) and refer to it with key: {secretRef: <name>}")
