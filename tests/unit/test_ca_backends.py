"""CA backends without a network: builtin roots, provided material, apply-time checks.

Everything runs on a ``ResourceManager`` over the memory store; certificates with unusual
extensions (no basicConstraints, a keyUsage without keyCertSign, …) are built here with
``cryptography`` directly. The vault backend is tested against a real OpenBao in
``tests/integration/test_vault_backend.py``; only its error wording is tested here.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import socket
import threading
from typing import Any

import hvac.exceptions
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from gossamer.errors import Conflict, InvalidResource, NotFound
from gossamer.model.base import Resource
from gossamer.model.mesh import CaBackend, VaultConf
from gossamer.model.registry import parse_document, to_document
from gossamer.model.secret import SecretSpec
from gossamer.pki.backends import (
    BuiltinProvider,
    ProvidedProvider,
    global_secret_reader,
    mesh_secret_reader,
    provider_for,
    validate_provided,
)
from gossamer.pki.backends.base import (
    CaBackendError,
    CaRefused,
    CaUnreachable,
    InvalidCaMaterial,
    path_to_root,
)
from gossamer.pki.backends.builtin import read_secret_json, secret_json
from gossamer.pki.backends.validation import ca_checks
from gossamer.pki.backends.vault_session import _Request, translate
from gossamer.pki.certs import (
    KeyPair,
    PrivateKey,
    chain_root,
    fingerprint,
    new_csr,
    new_key,
    new_leaf,
    new_root_ca,
    sign_leaf,
)
from gossamer.pki.names import root_secret_name
from gossamer.resources import Action, ResourceManager, deny_system
from gossamer.store.memory import MemoryStore

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)


# -- building certificates --------------------------------------------------------------


def make_ca(name: str, issuer: KeyPair | None = None, *, key: PrivateKey | None = None,
            ca: bool | None = True, path_length: int | None = None,
            key_cert_sign: bool | None = True, not_before: dt.datetime = NOW - DAY,
            not_after: dt.datetime = NOW + 365 * DAY) -> KeyPair:
    """A certificate with exactly the extensions asked for (``ca=None``: no
    basicConstraints; ``key_cert_sign=None``: no keyUsage), self-signed without issuer."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, name)])
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(issuer.cert.subject if issuer else subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(not_before).not_valid_after(not_after))
    if ca is not None:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True)
    if key_cert_sign is not None:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=key_cert_sign,
            crl_sign=key_cert_sign, encipher_only=False, decipher_only=False), critical=True)
    cert = builder.sign(issuer.key if issuer else key, hashes.SHA256())
    return KeyPair(cert, key)


def pem(*pairs: KeyPair) -> bytes:
    return b"".join(p.cert_pem() for p in pairs)


def traditional(key: PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


def refusal(cert: bytes, key: bytes, now: dt.datetime = NOW) -> InvalidCaMaterial:
    with pytest.raises(InvalidCaMaterial) as refused:
        validate_provided(cert, key, now)
    return refused.value


# -- validate_provided --------------------------------------------------------------------


def test_a_self_signed_root_with_its_key_is_accepted() -> None:
    root = make_ca("Corp root", path_length=1)
    ca, chain, roots = validate_provided(root.cert_pem(), root.key_pem(), NOW)
    assert ca.cert == root.cert
    assert chain == ()
    assert roots == (root.cert,)


def test_an_intermediate_followed_by_its_root_gives_the_chain_and_the_root() -> None:
    root = make_ca("Corp root")
    inter = make_ca("Corp mesh CA", root, path_length=1)
    ca, chain, roots = validate_provided(pem(inter, root), traditional(inter.key), NOW)
    assert ca.cert == inter.cert
    assert chain == (inter.cert,)
    assert roots == (root.cert,)


def test_rsa_keys_in_both_encodings_are_accepted() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    root = make_ca("RSA root", key=key)
    for encoded in (root.key_pem(), traditional(key)):
        assert validate_provided(root.cert_pem(), encoded, NOW)[0].key.key_size == 2048  # type: ignore[union-attr]


@pytest.mark.parametrize("cert", [b"", b"hello", b"-----BEGIN PRIVATE KEY-----\nAAAA\n"
                                                 b"-----END PRIVATE KEY-----\n"])
def test_no_pem_certificate_is_refused(cert: bytes) -> None:
    refused = refusal(cert, make_ca("x").key_pem())
    assert refused.part == "cert"
    assert "the certificate is not PEM: no '-----BEGIN CERTIFICATE-----' block" in str(refused)


def test_a_certificate_block_that_does_not_parse_is_refused() -> None:
    refused = refusal(b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
                      make_ca("x").key_pem())
    assert "the certificate PEM does not parse" in str(refused)


def test_a_key_that_is_not_pem_is_refused() -> None:
    root = make_ca("x")
    refused = refusal(root.cert_pem(), b"not a key")
    assert refused.part == "key"
    assert "the key is not a PEM private key" in str(refused)


def test_an_encrypted_key_is_refused() -> None:
    root = make_ca("x")
    encrypted = root.key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.BestAvailableEncryption(b"pw"))
    assert "the key is encrypted with a passphrase" in str(refusal(root.cert_pem(), encrypted))


def test_a_key_other_than_ecdsa_or_rsa_is_refused() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    encoded = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    refused = refusal(make_ca("x").cert_pem(), encoded)
    assert "only ECDSA and RSA keys are supported" in str(refused)


def test_a_certificate_without_basic_constraints_is_not_a_ca() -> None:
    cert = make_ca("Plain", ca=None)
    assert str(refusal(cert.cert_pem(), cert.key_pem())) == (
        "certificate 'CN=Plain' is not a CA: it has no basicConstraints extension")


def test_a_leaf_certificate_is_not_a_ca() -> None:
    leaf = new_leaf(new_root_ca("r", NOW, DAY), "web", NOW, HOUR)
    refused = refusal(pem(leaf), leaf.key_pem())
    assert "is not a CA: its basicConstraints say CA:FALSE" in str(refused)
    assert refused.part == "cert"


def test_a_key_that_does_not_match_is_refused() -> None:
    root, other = make_ca("Corp root"), make_ca("Other")
    refused = refusal(root.cert_pem(), other.key_pem())
    assert refused.part == "key"
    assert str(refused) == ("the key does not match certificate 'CN=Corp root': it is the "
                            "private key of another certificate")


def test_an_expired_ca_is_refused_with_its_dates() -> None:
    root = make_ca("Old root", not_before=NOW - 400 * DAY, not_after=NOW - 30 * DAY)
    assert str(refusal(root.cert_pem(), root.key_pem())) == (
        "certificate 'CN=Old root' has expired: valid until 2026-10-27 12:00:00 UTC "
        "(now 2026-11-26 12:00:00 UTC)")


def test_a_ca_not_valid_yet_is_refused_with_its_dates() -> None:
    root = make_ca("Future root", not_before=NOW + DAY)
    assert str(refusal(root.cert_pem(), root.key_pem())) == (
        "certificate 'CN=Future root' is not valid yet: valid from 2026-11-27 12:00:00 UTC "
        "(now 2026-11-26 12:00:00 UTC)")


def test_an_expired_root_above_a_valid_intermediate_is_refused() -> None:
    root = make_ca("Old root", not_before=NOW - 400 * DAY, not_after=NOW - DAY)
    inter = make_ca("Mesh CA", root, path_length=1)
    assert "certificate 'CN=Old root' has expired" in str(refusal(pem(inter, root),
                                                                  inter.key_pem()))


def test_a_key_usage_without_key_cert_sign_is_refused() -> None:
    root = make_ca("Signer", key_cert_sign=False)
    assert str(refusal(root.cert_pem(), root.key_pem())) == (
        "certificate 'CN=Signer' has a keyUsage without keyCertSign: it may not sign "
        "certificates")


def test_no_key_usage_at_all_is_accepted() -> None:
    root = make_ca("Unrestricted", key_cert_sign=None)
    assert validate_provided(root.cert_pem(), root.key_pem(), NOW)[2] == (root.cert,)


def test_path_length_zero_is_refused() -> None:
    root = make_ca("Leaf-only CA", path_length=0)
    assert str(refusal(root.cert_pem(), root.key_pem())) == (
        "certificate 'CN=Leaf-only CA' has pathLenConstraint 0: it could not sign the zones' "
        "intermediate CAs; it needs a pathLenConstraint of at least 1, or none")


def test_a_root_whose_path_length_leaves_no_room_for_the_chain_is_refused() -> None:
    root = make_ca("Corp root", path_length=1)
    inter = make_ca("Mesh CA", root)   # below the root: this CA and the zones' intermediates
    refused = refusal(pem(inter, root), inter.key_pem())
    assert ("certificate 'CN=Corp root' has pathLenConstraint 1, but 2 CA certificates would "
            "sit below it") in str(refused)


def test_a_chain_whose_signatures_do_not_link_is_refused() -> None:
    root, stranger = make_ca("Corp root"), make_ca("Stranger root")
    inter = make_ca("Mesh CA", root)
    assert str(refusal(pem(inter, stranger), inter.key_pem())) == (
        "certificate #2 'CN=Stranger root' did not sign certificate #1 'CN=Mesh CA': list the "
        "CA certificate first, then each issuer in order up to the root")


def test_an_intermediate_without_its_root_is_refused() -> None:
    root = make_ca("Corp root")
    inter = make_ca("Mesh CA", root)
    assert str(refusal(inter.cert_pem(), inter.key_pem())) == (
        "the chain ends at 'CN=Mesh CA', issued by 'CN=Corp root', which is not in the "
        "secret: add the root certificate ('CN=Corp root', self-signed) after it in the same "
        "secret; sidecars need a self-signed root to trust")


def test_path_to_root_follows_signatures_in_any_order() -> None:
    root = make_ca("Root")
    inter = make_ca("Inter", root)
    leaf = new_leaf(inter, "w", NOW, HOUR)
    assert path_to_root(leaf.cert, [root.cert, inter.cert]) == ((inter.cert,), root.cert)
    assert path_to_root(leaf.cert, [inter.cert]) == ((inter.cert,), None)
    assert path_to_root(root.cert, []) == ((), root.cert)


# -- the builtin backend ---------------------------------------------------------------------


class YieldingStore(MemoryStore):
    """A store that lets other tasks run during each read, as a real one does."""

    async def get(self, kind: str, name: str, mesh: str = "") -> Resource:
        await asyncio.sleep(0)
        return await super().get(kind, name, mesh)


def builtin(name: str = "ca-1", **conf: Any) -> CaBackend:
    return CaBackend.model_validate({"name": name, "type": "builtin", "conf": conf})


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


# -- the provided backend -------------------------------------------------------------------


def secret_doc(name: str, data: bytes, mesh: str = "payments") -> dict[str, Any]:
    return {"type": "Secret", "name": name, "mesh": mesh,
            "data": base64.b64encode(data).decode()}


def global_secret_doc(name: str, data: bytes) -> dict[str, Any]:
    """Where a provided CA's key lives: never synced to the zones."""
    return {"type": "GlobalSecret", "name": name, "data": base64.b64encode(data).decode()}


def provided(name: str = "files", cert: str = "ca-cert", key: str = "ca-key") -> dict[str, Any]:
    return {"name": name, "type": "provided",
            "conf": {"cert": {"secretRef": cert}, "key": {"secretRef": key}}}


def mesh_doc(*backends: dict[str, Any], enabled: str | None = None) -> dict[str, Any]:
    mtls: dict[str, Any] = {"backends": list(backends)}
    if enabled:
        mtls["enabledBackend"] = enabled
    return {"type": "Mesh", "name": "payments", "mtls": mtls}


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


# -- apply-time checks --------------------------------------------------------------------


def checked_manager(clock: list[dt.datetime] | None = None) -> ResourceManager:
    now = clock or [NOW]
    return ResourceManager(MemoryStore(), checks=ca_checks(lambda: now[0]))


async def refused(manager: ResourceManager, *docs: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(InvalidResource) as exc:
        if len(docs) == 1:
            await manager.apply(parse_document(docs[0]))
        else:
            await manager.apply_batch(list(docs))
    return [(e.path, e.message) for e in exc.value.field_errors]


async def test_a_mesh_and_its_ca_secrets_apply_together_in_one_batch() -> None:
    root = make_ca("Corp root")
    manager = checked_manager()
    applied = await manager.apply_batch([
        mesh_doc(provided(), enabled="files"), secret_doc("ca-cert", root.cert_pem()),
        global_secret_doc("ca-key", root.key_pem())])
    assert [a.action for a in applied] == [Action.CREATED] * 3


async def test_a_mesh_whose_provided_secrets_do_not_exist_is_refused() -> None:
    manager = checked_manager()
    errors = await refused(manager, mesh_doc({"name": "builtin-1", "type": "builtin"},
                                             provided()))
    assert errors == [
        ("mtls.backends[1].conf.cert", "secret 'ca-cert' does not exist in mesh 'payments'; "
                                       "apply it first, or in the same batch"),
        ("mtls.backends[1].conf.key", "GlobalSecret 'ca-key' does not exist; apply it first, "
                                      "or in the same batch (a provided CA's key is a "
                                      "GlobalSecret: it never leaves the control plane that "
                                      "owns the mesh roots)")]
    with pytest.raises(NotFound):
        await manager.get("Mesh", "payments")


async def test_a_batch_with_a_certificate_that_is_not_a_ca_stores_nothing() -> None:
    leaf = new_leaf(new_root_ca("r", NOW, DAY), "web", NOW, HOUR)
    manager = checked_manager()
    docs = [mesh_doc(provided(), enabled="files"), secret_doc("ca-cert", leaf.cert_pem()),
            global_secret_doc("ca-key", leaf.key_pem())]
    errors = await refused(manager, *docs)
    problem = "certificate 'CN=web,O=Gossamer' is not a CA: its basicConstraints say CA:FALSE"
    # The Mesh and each Secret of the pair are refused for the same reason.
    assert errors == [
        ("documents[0].mtls.backends[0].conf.cert", problem),
        ("documents[1].data", f"the cert of CA backend 'files' of mesh 'payments': {problem}"),
        ("documents[2].data", f"the key of CA backend 'files' of mesh 'payments': {problem}")]
    assert (await manager.list("Mesh")).total == 0
    assert (await manager.list("Secret")).total == 0
    assert (await manager.list("GlobalSecret")).total == 0
    with pytest.raises(InvalidResource):   # a dry run checks the same
        await manager.apply_batch(docs, dry_run=True)


async def test_a_refused_mesh_update_leaves_the_stored_mesh_in_place() -> None:
    root, other = make_ca("Corp root"), make_ca("Other")
    manager = checked_manager()
    await manager.apply_batch([mesh_doc({"name": "builtin-1", "type": "builtin"},
                                        enabled="builtin-1"),
                               secret_doc("ca-cert", root.cert_pem()),
                               global_secret_doc("ca-key", other.key_pem())])
    before = await manager.get("Mesh", "payments")
    errors = await refused(manager, mesh_doc({"name": "builtin-1", "type": "builtin"},
                                             provided(), enabled="files"))
    assert errors == [("mtls.backends[1].conf.key", "the key does not match certificate "
                       "'CN=Corp root': it is the private key of another certificate")]
    assert await manager.get("Mesh", "payments") == before


async def test_a_mesh_can_switch_away_from_a_backend_whose_material_expired() -> None:
    root = make_ca("Short root", not_after=NOW + DAY)
    clock = [NOW]
    manager = checked_manager(clock)
    builtin_doc = {"name": "builtin-1", "type": "builtin"}
    await manager.apply_batch([mesh_doc(builtin_doc, provided(), enabled="files"),
                               secret_doc("ca-cert", root.cert_pem()),
                               global_secret_doc("ca-key", root.key_pem())])
    clock[0] = NOW + 2 * DAY
    # The same document again is no change, so nothing is judged again.
    again = await manager.apply(parse_document(mesh_doc(builtin_doc, provided(),
                                                        enabled="files")))
    assert again.action is Action.UNCHANGED
    switched = await manager.apply(parse_document(mesh_doc(builtin_doc, provided(),
                                                           enabled="builtin-1")))
    assert switched.action is Action.UPDATED
    # Enabling the expired one again is refused, with the dates.
    errors = await refused(manager, mesh_doc(builtin_doc, provided(), enabled="files"))
    assert len(errors) == 1 and errors[0][0] == "mtls.backends[1].conf.cert"
    assert "has expired: valid until 2026-11-27 12:00:00 UTC" in errors[0][1]


async def test_a_secret_update_that_would_break_a_provided_backend_is_refused() -> None:
    root = make_ca("Corp root")
    manager = checked_manager()
    await manager.apply_batch([mesh_doc(provided(), enabled="files"),
                               secret_doc("ca-cert", root.cert_pem()),
                               global_secret_doc("ca-key", root.key_pem())])
    errors = await refused(manager, global_secret_doc("ca-key", make_ca("Other").key_pem()))
    assert errors == [("data", "the key of CA backend 'files' of mesh 'payments': the key does "
                               "not match certificate 'CN=Corp root': it is the private key of "
                               "another certificate")]
    stored = await manager.get("GlobalSecret", "ca-key")
    assert isinstance(stored.spec, SecretSpec) and stored.spec.value() == root.key_pem()
    errors = await refused(manager, secret_doc("ca-cert", make_ca("Other").cert_pem()))
    assert errors == [("data", "the cert of CA backend 'files' of mesh 'payments': the key does "
                               "not match certificate 'CN=Other': it is the private key of "
                               "another certificate")]
    # Both halves replaced together in one batch: the new pair is judged as a pair.
    new = make_ca("New root")
    applied = await manager.apply_batch([secret_doc("ca-cert", new.cert_pem()),
                                         global_secret_doc("ca-key", new.key_pem())])
    assert [a.action for a in applied] == [Action.UPDATED, Action.UPDATED]
    # A secret no backend uses is not judged, nor is a mesh Secret named like the key.
    await manager.apply(parse_document(secret_doc("unrelated", b"anything")))
    await manager.apply(parse_document(global_secret_doc("unrelated", b"anything")))
    await manager.apply(parse_document(secret_doc("ca-key", b"not the key")))


async def test_an_inline_key_is_refused_and_the_key_may_not_be_a_mesh_secret() -> None:
    root = make_ca("Corp root")
    manager = checked_manager()
    inline = {"name": "files", "type": "provided", "conf": {
        "cert": {"inline": root.cert_pem().decode()}, "key": {"inline": root.key_pem().decode()}}}
    errors = await refused(manager, mesh_doc(inline, enabled="files"))
    assert errors == [("mtls.backends[0].conf.key.inline",
                       "a provided CA's private key may not be inline: the Mesh is copied to "
                       "every zone and returned by GET, and the key would be too; store it in "
                       "a GlobalSecret (never synced) and refer to it with key: {secretRef: "
                       "<name>}")]
    # The old layout, the key as a Secret of the mesh, is refused with what to do instead.
    errors = await refused(manager, mesh_doc(provided(), enabled="files"),
                           secret_doc("ca-cert", root.cert_pem()),
                           secret_doc("ca-key", root.key_pem()))
    assert errors == [("documents[0].mtls.backends[0].conf.key",
                       "GlobalSecret 'ca-key' does not exist; apply it first, or in the same "
                       "batch (a provided CA's key is a GlobalSecret: it never leaves the "
                       "control plane that owns the mesh roots); secret 'ca-key' of mesh "
                       "'payments' is not read for the key: store the key as a GlobalSecret "
                       "and delete that Secret, which is copied to every zone")]
    assert (await manager.list("Mesh")).total == 0


async def test_a_global_secret_is_judged_for_every_mesh_whose_provided_key_it_is() -> None:
    root = make_ca("Corp root")
    manager = checked_manager()
    await manager.apply_batch([mesh_doc(provided(), enabled="files"),
                               secret_doc("ca-cert", root.cert_pem()),
                               global_secret_doc("ca-key", root.key_pem())])
    # Another mesh uses the same CA under another backend name.
    await manager.apply_batch([{**mesh_doc(provided(name="corp")), "name": "billing"},
                               secret_doc("ca-cert", root.cert_pem(), mesh="billing")])
    errors = await refused(manager, global_secret_doc("ca-key", make_ca("New").key_pem()))
    assert [e[1].split(":")[0] for e in errors] == [
        "the key of CA backend 'corp' of mesh 'billing'",
        "the key of CA backend 'files' of mesh 'payments'"]


async def test_a_vault_backend_needs_its_secrets_and_pem_where_pem_is_due() -> None:
    manager = checked_manager()
    await manager.apply(parse_document({"type": "Mesh", "name": "payments"}))
    await manager.apply(parse_document(secret_doc("vault-ca", b"not a certificate")))
    vault = {"name": "vault-1", "type": "vault", "conf": {
        "address": "https://vault.internal:8200", "pki": "pki-payments", "role": "zones",
        "auth": {"token": {"secretRef": "vault-token"}}, "tls": {"caCertSecretRef": "vault-ca"}}}
    errors = await refused(manager, mesh_doc(vault))
    assert errors == [
        ("mtls.backends[0].conf.auth.token.secretRef",
         "secret 'vault-token' does not exist in mesh 'payments'; apply it first, or in the "
         "same batch"),
        ("mtls.backends[0].conf.tls.caCertSecretRef",
         "secret 'vault-ca': the certificate is not PEM: no '-----BEGIN CERTIFICATE-----' "
         "block found")]
    ca = new_root_ca("Vault CA", NOW, DAY)
    applied = await manager.apply_batch([mesh_doc(vault), secret_doc("vault-ca", ca.cert_pem()),
                                         secret_doc("vault-token", b"s.token")])
    assert [a.action for a in applied] == [Action.UPDATED, Action.UPDATED, Action.CREATED]


def vault_doc(address: str, **extra: Any) -> dict[str, Any]:
    return mesh_doc({"name": "vault-1", "type": "vault", "conf": {
        "address": address, "pki": "pki-payments", "role": "zones",
        "auth": {"token": {"secretRef": "vault-token"}}, **extra}})


def test_vault_over_plain_http_is_refused_unless_asked_for() -> None:
    with pytest.raises(InvalidResource) as exc:
        parse_document(vault_doc("http://vault.internal:8200"))
    assert [(e.path, e.message) for e in exc.value.field_errors] == [(
        "mtls.backends[0].conf",
        "address 'http://vault.internal:8200' is plain HTTP: the Vault token or AppRole "
        "secret ID would be sent in clear; use https://, or set insecureHttp: true (for local "
        "development only)")]
    local = parse_document(vault_doc("http://127.0.0.1:8200", insecureHttp=True))
    assert to_document(local)["mtls"]["backends"][0]["conf"]["insecureHttp"] is True
    secure = parse_document(vault_doc("https://vault.internal:8200"))
    assert to_document(secure)["mtls"]["backends"][0]["conf"]["insecureHttp"] is False


@pytest.mark.parametrize("doc", [
    {"type": "ZoneCertificateRequest", "name": "payments",
     "spec": {"mesh": "payments", "csr": "-----BEGIN CERTIFICATE REQUEST-----\n"}},
    {"type": "ZoneCertificate", "name": "east.payments",
     "spec": {"zone": "east", "mesh": "payments", "certificate": "-----BEGIN CERTIFICATE-----\n",
              "trustBundle": "-----BEGIN CERTIFICATE-----\n"}}])
async def test_zone_certificates_are_written_by_control_planes_only(doc: dict[str, Any]) -> None:
    store = MemoryStore()
    api = ResourceManager(store, guard=deny_system)
    with pytest.raises(Conflict, match="written by the control planes only"):
        await api.apply(parse_document(doc))
    # The control planes' own managers (the zone CA, the signer, the sync) are unguarded.
    written = await ResourceManager(store).apply(parse_document(doc))
    assert written.action is Action.CREATED
    with pytest.raises(Conflict, match="written by the control planes only"):
        await api.delete(doc["type"], doc["name"])


async def test_a_manager_without_checks_stores_what_it_is_given() -> None:
    manager = ResourceManager(MemoryStore())
    applied = await manager.apply(parse_document(mesh_doc(provided())))
    assert applied.action is Action.CREATED


# -- vault error wording (pure) -------------------------------------------------------------


VAULT = VaultConf.model_validate({"address": "https://vault.internal:8200", "pki": "pki-payments",
                                  "role": "zones", "auth": {"token": {"secretRef": "t"}}})
WHO = "mesh payments, backend vault-1"
ADDRESS = "https://vault.internal:8200"


def test_vault_errors_are_translated_for_the_platform_engineer() -> None:
    req = _Request("post", "pki-payments/sign/zones")

    def t(exc: BaseException, r: _Request = req) -> CaBackendError:
        return translate(exc, WHO, ADDRESS, r, VAULT)

    down = t(hvac.exceptions.VaultDown(errors=["Vault is sealed"]))
    assert isinstance(down, CaUnreachable)
    assert str(down) == (f"{WHO}: Vault at {ADDRESS} cannot serve pki-payments/sign/zones now: "
                         "Vault is sealed")
    timeout = t(requests.exceptions.ReadTimeout("read timed out"))
    assert isinstance(timeout, CaUnreachable)
    assert str(timeout) == f"{WHO}: Vault at {ADDRESS} does not answer: no answer within 5 s"
    role = t(hvac.exceptions.InvalidRequest(errors=["unknown role: zones"]))
    assert isinstance(role, CaRefused)
    assert str(role) == (f"{WHO}: role 'zones' does not exist in PKI mount 'pki-payments' of "
                         f"Vault at {ADDRESS}")
    other = t(hvac.exceptions.InvalidRequest(errors=["common name not allowed"]))
    assert isinstance(other, CaRefused) and str(other).endswith(": common name not allowed")
    denied = t(hvac.exceptions.Forbidden(errors=["1 error occurred:\n\t* permission denied\n\n"]))
    assert str(denied) == (f"{WHO}: Vault at {ADDRESS} denied POST pki-payments/sign/zones: "
                           "the token's policy does not allow it (permission denied)")
    login = t(hvac.exceptions.InvalidRequest(errors=["invalid role or secret ID"]),
              _Request("post", "auth/approle/login", "AppRole"))
    assert isinstance(login, CaRefused)
    assert "refused the AppRole login: invalid role or secret ID" in str(login)


def test_a_long_foreign_error_text_is_cut_to_its_start() -> None:
    # A load balancer in front of Vault answers 502 with its own HTML page, which hvac
    # hands over whole as the error text.
    page = ("<html><head><title>502 Bad Gateway</title></head><body>\n"
            + "<p>The upstream server is not available.</p>\n" * 500 + "</body></html>")
    req = _Request("post", "pki-payments/root/sign-intermediate")
    error = translate(hvac.exceptions.BadGateway(page), WHO, ADDRESS, req, VAULT)
    assert isinstance(error, CaUnreachable)
    text = str(error)
    assert text.startswith(f"{WHO}: Vault at {ADDRESS} cannot serve "
                           "pki-payments/root/sign-intermediate now: <html><head><title>502 Bad "
                           "Gateway</title></head><body> <p>The upstream server")
    assert text.endswith(" more characters cut)")
    assert len(text) < 500
    # The same for the other ways a foreign text reaches an error.
    long = "x" * 10_000
    for exc in (hvac.exceptions.InvalidRequest(errors=[long]),
                requests.exceptions.ConnectionError(long), RuntimeError(long)):
        text = str(translate(exc, WHO, ADDRESS, req, VAULT))
        assert len(text) < 500 and text.endswith(" more characters cut)"), text


async def test_a_vault_provider_replaced_by_a_new_configuration_is_closed() -> None:
    manager = ResourceManager(MemoryStore())
    await manager.apply(parse_document({"type": "Mesh", "name": "replaced"}))
    await manager.apply(parse_document(secret_doc("vault-token", b"s.token", mesh="replaced")))
    with socket.socket() as probe:      # a port nothing listens on: refused at once
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conf = {"address": f"https://127.0.0.1:{port}", "pki": "pki", "role": "zones",
            "auth": {"token": {"secretRef": "vault-token"}}}

    def backend(**changed: str) -> CaBackend:
        return CaBackend.model_validate({"name": "vault-1", "type": "vault",
                                         "conf": {**conf, **changed}})

    old = provider_for(manager, "replaced", backend())
    with pytest.raises(CaUnreachable):
        await old.roots()               # starts its worker thread and connection pool
    workers = [t for t in threading.enumerate() if t.name.startswith("vault-replaced-")]
    assert workers
    assert provider_for(manager, "replaced", backend()) is old
    new = provider_for(manager, "replaced", backend(role="other-role"))
    assert new is not old
    for worker in workers:
        worker.join(timeout=5)
    assert not [t.name for t in workers if t.is_alive()]
