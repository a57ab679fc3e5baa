"""Apply-time checks of a mesh's CA material: refuse a write that would break a backend.

``ca_checks()`` gives the ``ResourceManager`` two checks:

* a Mesh: each ``provided`` backend that is new, changed or newly enabled must have its
  cert and key (Secrets of that mesh, or inline) and pass ``validate_provided``; each such
  ``vault`` backend's Secrets must exist, and its CA and client certificate must be PEM.
  Backends the write leaves as they were are not judged again, so a mesh can always switch
  away from a backend whose material went bad;
* a Secret that a ``provided`` backend of its mesh uses as cert or key: the new bytes must
  pass ``validate_provided`` with the other half as it is (or as the same batch has it).

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
        await check_secret(manager, res, batch, clock())

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
    cert = await _ref_bytes(manager, mesh, conf.cert, batch)
    key = await _ref_bytes(manager, mesh, conf.key, batch)
    errors = [FieldError(f"{at}.{part}", _missing(ref, mesh))
              for part, ref, value in (("cert", conf.cert, cert), ("key", conf.key, key))
              if value is None]
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


# -- a Secret -----------------------------------------------------------------------------


async def check_secret(manager: ResourceManager, res: Resource, batch: Batch,
                       now: dt.datetime) -> None:
    if res.type != "Secret" or not isinstance(res.spec, SecretSpec):
        return
    try:
        mesh = (await manager.get_as_applied("Mesh", res.mesh, "", batch)).spec
    except NotFound:
        return  # the manager refuses a secret without its mesh anyway
    if not isinstance(mesh, MeshSpec) or mesh.mtls is None:
        return
    errors: list[FieldError] = []
    for backend in mesh.mtls.backends:
        conf = backend.conf
        if not isinstance(conf, ProvidedConf):
            continue
        as_cert, as_key = conf.cert.secret_ref == res.name, conf.key.secret_ref == res.name
        if not (as_cert or as_key):
            continue
        cert = res.spec.value() if as_cert else await _ref_bytes(manager, res.mesh, conf.cert,
                                                                  batch)
        key = res.spec.value() if as_key else await _ref_bytes(manager, res.mesh, conf.key,
                                                               batch)
        if cert is None or key is None:
            continue  # the other half is missing: the Mesh check reports that
        try:
            validate_provided(cert, key, now)
        except InvalidCaMaterial as exc:
            role = "cert and key" if as_cert and as_key else "cert" if as_cert else "key"
            errors.append(FieldError("data", f"the {role} of CA backend {backend.name!r} of "
                                             f"mesh {res.mesh!r}: {exc.detail}"))
    if errors:
        raise InvalidResource(f"secret {res.name!r} would break a CA backend", errors)


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


def _missing(ref: SecretRef, mesh: str) -> str:
    return (f"secret {ref.secret_ref!r} does not exist in mesh {mesh!r}; apply it first, or "
            "in the same batch")
