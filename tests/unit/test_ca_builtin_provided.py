"""The builtin and provided CA backends on a ``ResourceManager`` over the memory store: one
root per backend generation (never two for concurrent callers), intermediates capped at the
root, and provided material read from secrets (its key only from a global secret).
"""

from __future__ import annotations

import asyncio

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from gossamer.errors import NotFound
from gossamer.model.base import Resource
from gossamer.model.mesh import CaBackend
from gossamer.model.registry import parse_document
from gossamer.pki.backends import (
    BuiltinProvider,
    ProvidedProvider,
    global_secret_reader,
    mesh_secret_reader,
    provider_for,
)
from gossamer.pki.backends.base import CaBackendError, InvalidCaMaterial
from gossamer.pki.backends.builtin import read_secret_json, secret_json
from gossamer.pki.certs import (
    KeyPair,
    chain_root,
    fingerprint,
    new_csr,
    new_key,
    new_root_ca,
    sign_leaf,
)
from gossamer.pki.names import root_secret_name
from gossamer.resources import ResourceManager
from gossamer.store.memory import MemoryStore
from tests.unit.ca_material import (
    DAY,
    HOUR,
    NOW,
    builtin,
    global_secret_doc,
    make_ca,
    mesh_doc,
    pem,
    provided,
    secret_doc,
)


class YieldingStore(MemoryStore):
    """A store that lets other tasks run during each read, as a real one does."""

    async def get(self, kind: str, name: str, mesh: str = "") -> Resource:
        await asyncio.sleep(0)
        return await super().get(kind, name, mesh)


async def test_two_callers_never_make_two_roots() -> None:
    manager = ResourceManager(YieldingStore())
    providers = [BuiltinProvider(manager, "payments", builtin()) for _ in range(5)]
    roots = await asyncio.gather(*(p.roots() for p in providers))
    assert len({fingerprint(r[0]) for r in roots}) == 1
    stored = await read_secret_json(manager, "ca-payments-ca-1")
    stored = await read_secret_json(manager, providers[0].secret_name)
    assert x509.load_pem_x509_certificate(stored["cert"].encode()) == roots[0][0]


async def test_the_root_follows_the_backend_conf_and_is_labelled() -> None:
    manager = ResourceManager(MemoryStore())
    provider = BuiltinProvider(manager, "payments",
                               builtin(caCert={"keyType": "ecdsa-p384", "expiration": "48h"}),
                               clock=lambda: NOW)
    root = (await provider.roots())[0]
    assert root.not_valid_after_utc == NOW + 48 * HOUR
    public = root.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name == "secp384r1"
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 1
    stored = await manager.get("GlobalSecret", root_secret_name("payments", "ca-1", 0))
    assert stored.labels == {"gossamer.io/ca": "payments"}


async def test_each_generation_has_its_own_root_and_only_it_is_deleted() -> None:
    manager = ResourceManager(MemoryStore())
    first = BuiltinProvider(manager, "payments", builtin(), 0)
    second = BuiltinProvider(manager, "payments", builtin(), 2)
    root0, root2 = (await first.roots())[0], (await second.roots())[0]
    assert fingerprint(root0) != fingerprint(root2)
    assert second.secret_name == root_secret_name("payments", "ca-1", 2)
    assert (await manager.get("GlobalSecret", second.secret_name)).labels == {
        "gossamer.io/ca": "payments"}
    # A new provider object finds the stored roots again.
    assert (await BuiltinProvider(manager, "payments", builtin(), 2).roots())[0] == root2
    await first.delete_root()
    with pytest.raises(NotFound):
        await manager.get("GlobalSecret", first.secret_name)
    assert (await BuiltinProvider(manager, "payments", builtin(), 2).roots())[0] == root2
    await first.delete_root()   # already gone: nothing to do


async def test_a_root_stored_under_the_old_name_is_kept() -> None:
    manager = ResourceManager(MemoryStore())
    existing = new_root_ca("Gossamer mesh payments", NOW, 3650 * DAY)
    await manager.apply(secret_json("ca-payments-ca-1", {"gossamer.io/ca": "payments"}, {
        "cert": existing.cert_pem().decode(), "key": existing.key_pem().decode()}))
    provider = provider_for(manager, "payments", builtin())
    assert list(await provider.roots()) == [existing.cert]
    # ... and moved to its new name: created there, then deleted under the old one.
    moved = await read_secret_json(manager, root_secret_name("payments", "ca-1", 0))
    assert moved is not None and moved["key"] == existing.key_pem().decode()
    with pytest.raises(NotFound):
        await manager.get("GlobalSecret", "ca-payments-ca-1")


async def test_builtin_signs_intermediates_capped_at_the_root_and_no_workloads() -> None:
    manager = ResourceManager(MemoryStore())
    provider = BuiltinProvider(manager, "payments", builtin(caCert={"expiration": "2h"}),
                               clock=lambda: NOW)
    assert not provider.issues_workloads
    zone_key = new_key()
    signed = await provider.sign_intermediate(new_csr(zone_key, "zone west"), NOW, 7 * DAY)
    root = signed.roots[0]
    assert signed.certificate.not_valid_after_utc == root.not_valid_after_utc
    constraints = signed.certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.value.ca and constraints.value.path_length == 0
    leaf = sign_leaf(KeyPair(signed.certificate, zone_key), new_csr(new_key(), "w"), NOW, HOUR)
    assert chain_root([leaf, signed.certificate, *signed.chain], signed.roots) == root
    with pytest.raises(CaBackendError, match="does not issue workload certificates"):
        await provider.sign_workload(new_csr(new_key(), "w"), ["spiffe://payments/b"], NOW, HOUR)


async def test_provided_with_an_intermediate_and_its_root_in_one_secret() -> None:
    root = make_ca("Corp root")
    inter = make_ca("Payments CA", root, path_length=1)
    manager = ResourceManager(MemoryStore())
    await manager.apply_batch([mesh_doc(provided()), secret_doc("ca-cert", pem(inter, root)),
                               global_secret_doc("ca-key", inter.key_pem())])
    provider = provider_for(manager, "payments", CaBackend.model_validate(provided()))
    assert isinstance(provider, ProvidedProvider) and not provider.issues_workloads
    await provider.check()
    assert list(await provider.roots()) == [root.cert]
    zone_key = new_key()
    signed = await provider.sign_intermediate(new_csr(zone_key, "zone west"), NOW, DAY)
    assert signed.chain == (inter.cert,)
    assert chain_root([signed.certificate, *signed.chain], signed.roots) == root.cert
    leaf = sign_leaf(KeyPair(signed.certificate, zone_key), new_csr(new_key(), "w"), NOW, HOUR)
    assert chain_root([leaf, signed.certificate, *signed.chain], signed.roots) == root.cert
    with pytest.raises(CaBackendError, match="does not issue workload certificates"):
        await provider.sign_workload(new_csr(new_key(), "w"), [], NOW, HOUR)


async def test_provided_inline_cert_and_material_that_goes_bad() -> None:
    root = make_ca("Inline root", not_after=NOW + DAY)
    manager = ResourceManager(MemoryStore())
    await manager.apply(parse_document(global_secret_doc("ca-key", root.key_pem())))
    backend = CaBackend.model_validate({"name": "files", "type": "provided", "conf": {
        "cert": {"inline": root.cert_pem().decode()}, "key": {"secretRef": "ca-key"}}})
    clock = [NOW]
    provider = ProvidedProvider("payments", backend, mesh_secret_reader(manager, "payments"),
                                global_secret_reader(manager), clock=lambda: clock[0])
    assert list(await provider.roots()) == [root.cert]
    clock[0] = NOW + 2 * DAY
    with pytest.raises(InvalidCaMaterial, match=r"^mesh payments, backend files: certificate "
                                                r"'CN=Inline root' has expired"):
        await provider.check()


async def test_a_missing_secret_is_named_with_its_mesh() -> None:
    manager = ResourceManager(MemoryStore())
    await manager.apply(parse_document({"type": "Mesh", "name": "payments"}))
    provider = provider_for(manager, "payments", CaBackend.model_validate(provided()))
    with pytest.raises(InvalidCaMaterial,
                       match="secret 'ca-cert' does not exist in mesh 'payments'"):
        await provider.roots()


async def test_the_key_is_read_from_a_global_secret_never_from_a_mesh_secret() -> None:
    root = make_ca("Corp root")
    manager = ResourceManager(MemoryStore())
    # The old layout: the key as a Secret of the mesh, which the global syncs to every zone.
    await manager.apply_batch([mesh_doc(provided()), secret_doc("ca-cert", root.cert_pem()),
                               secret_doc("ca-key", root.key_pem())])
    provider = provider_for(manager, "payments", CaBackend.model_validate(provided()))
    with pytest.raises(InvalidCaMaterial) as missing:
        await provider.roots()
    assert str(missing.value) == (
        "mesh payments, backend files: GlobalSecret 'ca-key' does not exist (a provided CA's "
        "key is a GlobalSecret, kept by the control plane that owns the mesh roots)")
    await manager.apply(parse_document(global_secret_doc("ca-key", root.key_pem())))
    assert list(await provider.roots()) == [root.cert]

