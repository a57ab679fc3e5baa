"""Names of CA material: distinct tuples never share a name, and material stored under the
old names is found and moved without losing a key.

The old names were plain joins: roots at ``ca-<mesh>-<backend>[-g<N>]``, zone keys at
``zone-ca-key-<mesh>[-next]``, zone intermediates at ``<zone>.<mesh>``; mesh, backend
and zone names may contain ``-`` and ``.``, so (``a``, ``b-c``) and (``a-b``, ``c``)
named one root. The scenarios run the real controller and zone CA on one store, as a
standalone zone does.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from hypothesis import given, settings
from hypothesis import strategies as st

from authority.mesh_ca import MeshCaController
from gossamer.errors import NotFound
from gossamer.model.base import Resource
from gossamer.model.fields import MAX_NAME_LENGTH
from gossamer.model.labels import ZONE_KEY_LABEL
from gossamer.model.meshtrust import MeshTrustSpec
from gossamer.model.registry import parse_document
from gossamer.model.zonecertificate import ZoneCertificateSpec
from gossamer.pki.backends.builtin import BuiltinProvider, read_secret_json, secret_json
from gossamer.pki.certs import fingerprint, new_key, new_root_ca, public_der
from gossamer.pki.names import (
    legacy_root_secret_name,
    legacy_zone_key_secret_name,
    root_secret_name,
    zone_certificate_name,
    zone_key_secret_name,
)
from gossamer.resources import ResourceManager
from gossamer.store.memory import MemoryStore
from tests.unit.test_zone_ca import FakeSidecars, OneReplica
from zone_cp.intermediates import Intermediates

NOW = dt.datetime(2026, 11, 26, tzinfo=dt.UTC)
NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9.\-]*[a-z0-9])?$")

# Valid names, biased towards the characters that made the old names collide.
short_names = st.from_regex(r"\A[ab0-9]([ab.\-]{0,6}[ab0-9])?\Z")
long_names = st.builds(lambda head, body: (head * 300)[:MAX_NAME_LENGTH - 1] + body,
                       st.sampled_from(["a", "a-", "a."]), st.sampled_from(["b", "c"]))
names = st.one_of(short_names, long_names)
generations = st.integers(min_value=0, max_value=12)


def every_name(meshes: list[str], backends: list[str], gens: list[int]) -> dict[str, tuple]:
    """Each derived name with the tuple it was derived from (kind first)."""
    out: dict[str, tuple] = {}

    def add(name: str, key: tuple) -> None:
        assert len(name) <= MAX_NAME_LENGTH and NAME_RE.match(name), name
        assert out.setdefault(name, key) == key, f"{key} and {out[name]} share {name}"

    for mesh in meshes:
        for pending in (False, True):
            add(zone_key_secret_name(mesh, pending), ("zone-key", mesh, pending))
        for backend in backends:  # backend names double as zone names
            add(zone_certificate_name(backend, mesh), ("zone-cert", backend, mesh))
            for gen in gens:
                add(root_secret_name(mesh, backend, gen), ("root", mesh, backend, gen))
    return out


@settings(max_examples=300, deadline=None)
@given(st.lists(names, min_size=1, max_size=6, unique=True),
       st.lists(names, min_size=1, max_size=6, unique=True),
       st.lists(generations, min_size=1, max_size=4, unique=True))
def test_distinct_tuples_never_share_a_name(meshes: list[str], backends: list[str],
                                            gens: list[int]) -> None:
    derived = every_name(meshes, backends, gens)
    # A new name is never the old name of any tuple, so a stored old secret is never
    # mistaken for a new one.
    old = {legacy_root_secret_name(m, b, g) for m in meshes for b in backends for g in gens}
    old |= {legacy_zone_key_secret_name(m, p) for m in meshes for p in (False, True)}
    assert not old & {n for n, key in derived.items() if key[0] != "zone-cert"}


def test_the_old_collisions_are_gone() -> None:
    assert legacy_root_secret_name("a", "b-c", 0) == legacy_root_secret_name("a-b", "c", 0)
    assert root_secret_name("a", "b-c", 0) != root_secret_name("a-b", "c", 0)
    assert legacy_root_secret_name("a", "b-g1", 0) == legacy_root_secret_name("a", "b", 1)
    assert root_secret_name("a", "b-g1", 0) != root_secret_name("a", "b", 1)
    assert legacy_zone_key_secret_name("a", True) == legacy_zone_key_secret_name("a-next", False)
    assert zone_key_secret_name("a", True) != zone_key_secret_name("a-next", False)
    assert zone_certificate_name("a.b", "c") != zone_certificate_name("a", "b.c")


# -- through the controller and the zone CA -------------------------------------------------


def mesh(name: str, backend: str) -> Resource:
    return parse_document({"type": "Mesh", "name": name, "mtls": {
        "enabledBackend": backend, "backends": [{"name": backend, "type": "builtin"}]}})


async def settle(manager: ResourceManager, ca: OneReplica, now: dt.datetime = NOW) -> None:
    controller = MeshCaController(manager, local_zone="west")
    for _ in range(4):
        await controller.reconcile(now)
        await ca.reconcile(now)


async def roots_of(manager: ResourceManager, name: str) -> list[str]:
    spec = (await manager.get("MeshTrust", name)).spec
    assert isinstance(spec, MeshTrustSpec)
    return [fingerprint(x509.load_pem_x509_certificate(p.encode())) for p in spec.signer.roots]


async def test_meshes_whose_root_names_collided_get_their_own_roots() -> None:
    manager = ResourceManager(MemoryStore())
    await manager.apply(mesh("a", "b-c"))
    await manager.apply(mesh("a-b", "c"))
    await settle(manager, OneReplica(manager, FakeSidecars()))
    first, second = await roots_of(manager, "a"), await roots_of(manager, "a-b")
    assert first and second and set(first).isdisjoint(second)


async def test_a_renewal_does_not_take_another_meshs_zone_key() -> None:
    manager = ResourceManager(MemoryStore())
    await manager.apply(mesh("a", "ca-1"))
    await manager.apply(mesh("a-next", "ca-1"))
    ca = OneReplica(manager, FakeSidecars())
    await settle(manager, ca)
    before = public_der(ca.issuer("a-next").ca.key.public_key())
    # Mesh a's intermediate is due: the zone asks with a pending key for a (the old name
    # of which was a-next's current key), the signer is not run.
    await ca.reconcile(NOW + dt.timedelta(days=6))
    stored = await read_secret_json(manager, zone_key_secret_name("a-next", False))
    assert stored is not None
    assert public_der(ca.issuer("a-next").ca.key.public_key()) == before
    assert await manager.get("GlobalSecret", zone_key_secret_name("a", True))
    assert public_der(load_pem_private_key(stored["key"].encode(), None).public_key()) == before


# -- stores from before: found, checked, moved ----------------------------------------------


async def test_a_regenerated_root_under_its_old_name_is_moved_not_lost() -> None:
    manager = ResourceManager(MemoryStore())
    old = new_root_ca("Gossamer mesh payments ca-1 g2", NOW, dt.timedelta(days=3650))
    await manager.apply(secret_json("ca-payments-ca-1-g2", {"gossamer.io/ca": "payments"}, {
        "cert": old.cert_pem().decode(), "key": old.key_pem().decode()}))
    backend = mesh("payments", "ca-1").spec.mtls.backends[0]  # type: ignore[union-attr]
    # The old name is also backend "ca-1-g2"'s generation 0: its subject says it is not.
    other = BuiltinProvider(manager, "payments", backend.model_copy(update={"name": "ca-1-g2"}))
    assert (await other.roots())[0] != old.cert
    assert (await read_secret_json(manager, "ca-payments-ca-1-g2")) is not None  # not taken
    provider = BuiltinProvider(manager, "payments", backend, 2)
    assert list(await provider.roots()) == [old.cert]
    moved = await read_secret_json(manager, root_secret_name("payments", "ca-1", 2))
    assert moved is not None and moved["key"] == old.key_pem().decode()
    with pytest.raises(NotFound):
        await manager.get("GlobalSecret", "ca-payments-ca-1-g2")
    # Retiring it deletes it wherever it is.
    await provider.delete_root()
    with pytest.raises(NotFound):
        await manager.get("GlobalSecret", provider.secret_name)


async def test_a_zone_key_under_its_old_name_is_moved_and_keeps_signing() -> None:
    manager = ResourceManager(MemoryStore())
    key = new_key()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    # Mesh "default"'s current key, and mesh "default-next"'s (which is not ours to take).
    await manager.apply(secret_json("zone-ca-key-default", {ZONE_KEY_LABEL: "default"},
                                    {"key": pem}))
    await manager.apply(mesh("default", "ca-1"))
    ca = OneReplica(manager, FakeSidecars())
    await settle(manager, ca)
    assert public_der(ca.issuer("default").ca.key.public_key()) == public_der(key.public_key())
    with pytest.raises(NotFound):
        await manager.get("GlobalSecret", "zone-ca-key-default")
    stored = await read_secret_json(manager, zone_key_secret_name("default", False))
    assert stored == {"key": pem}


async def test_an_old_name_with_another_meshs_label_is_left_alone() -> None:
    manager = ResourceManager(MemoryStore())
    # Under the old names this is mesh "a-next"'s current key, not mesh "a"'s pending one.
    await manager.apply(secret_json("zone-ca-key-a-next", {ZONE_KEY_LABEL: "a-next"},
                                    {"key": "unused"}))
    intermediates = Intermediates(manager, "west")
    await intermediates.reconcile("a", None, NOW)
    assert await read_secret_json(manager, zone_key_secret_name("a", True)) is None
    assert await read_secret_json(manager, "zone-ca-key-a-next") == {"key": "unused"}


async def test_a_zone_intermediate_under_its_old_name_is_replaced() -> None:
    manager = ResourceManager(MemoryStore())
    await manager.apply(mesh("default", "ca-1"))
    ca = OneReplica(manager, FakeSidecars())
    await settle(manager, ca)
    signed = await manager.get("ZoneCertificate", zone_certificate_name("west", "default"))
    assert isinstance(signed.spec, ZoneCertificateSpec)
    # A store from before: the intermediate sits at "<zone>.<mesh>" only.
    await manager.delete("ZoneCertificate", signed.name)
    await manager.apply(Resource(type="ZoneCertificate", name="west.default",
                                 spec=signed.spec))
    await settle(manager, ca)
    assert await manager.get("ZoneCertificate", zone_certificate_name("west", "default"))
    with pytest.raises(NotFound):
        await manager.get("ZoneCertificate", "west.default")
