"""Apply-time checks of meshes' CA backends and their secrets on a ``ResourceManager`` over
the memory store: a mesh and its CA secrets apply together, a batch that would break a
backend stores nothing, and zone certificates are written by control planes only. The vault
backend is tested against a real OpenBao in ``tests/integration/vault/``;
here only its configuration checks and error wording.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from gossamer.errors import Conflict, InvalidResource, NotFound
from gossamer.model.registry import parse_document, to_document
from gossamer.model.secret import SecretSpec
from gossamer.pki.backends.validation import ca_checks
from gossamer.pki.certs import new_leaf, new_root_ca
from gossamer.resources import Action, ResourceManager, deny_system
from gossamer.store.memory import MemoryStore
from tests.unit.ca_material import (
    DAY,
    HOUR,
    NOW,
    global_secret_doc,
    make_ca,
    mesh_doc,
    provided,
    refused,
    secret_doc,
)


def checked_manager(clock: list[dt.datetime] | None = None) -> ResourceManager:
    now = clock or [NOW]
    return ResourceManager(MemoryStore(), checks=ca_checks(lambda: now[0]))


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

