"""Where token keys and revocations live, what older stores become, and their upkeep.

On memory stores: dataplane signing keys are GlobalSecrets (never synced) with a public
``TokenTrust`` per mesh; verification never makes a key; revocations are rows named
injectively, refused when malformed (storing nothing), dropped when their token would
have expired, and moved out of the one-secret format of older versions.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from authority.token_authority import TokenAuthority
from authority.token_upkeep import TokenUpkeep, migrate_token_state
from gossamer.errors import InvalidResource
from gossamer.model.base import Resource
from gossamer.model.labels import KEY_LABEL, ORIGIN_LABEL
from gossamer.model.registry import parse_document
from gossamer.model.secret import SecretSpec
from gossamer.model.tokenrevocation import revocation_name
from gossamer.resources import ResourceManager
from gossamer.store.memory import MemoryStore
from gossamer.tokens import DATAPLANE, SigningKey, TokenRejected, issue
from tests.waiting import eventually

NOW = 1_800_000_000.0
mesh_names = st.from_regex(r"[a-z0-9]([a-z0-9.\-]{0,250}[a-z0-9])?", fullmatch=True)
token_ids = st.from_regex(r"[a-z0-9]([a-z0-9\-]{0,126}[a-z0-9])?", fullmatch=True)


async def with_meshes(*meshes: str) -> ResourceManager:
    manager = ResourceManager(MemoryStore())
    for mesh in meshes:
        await manager.apply(parse_document({"type": "Mesh", "name": mesh}))
    return manager


@given(st.tuples(st.sampled_from(["zone", "dataplane"]), mesh_names, token_ids),
       st.tuples(st.sampled_from(["zone", "dataplane"]), mesh_names, token_ids))
def test_revocation_names_are_injective_and_valid(a: tuple[str, str, str],
                                                  b: tuple[str, str, str]) -> None:
    def key(purpose: str, mesh: str, token_id: str) -> tuple[str, str, str]:
        return (purpose, mesh if purpose == "dataplane" else "", token_id)

    name_a, name_b = revocation_name(*key(*a)), revocation_name(*key(*b))
    assert (name_a == name_b) == (key(*a) == key(*b))
    parse_document({"type": "TokenRevocation", "name": name_a, "spec": {
        "purpose": a[0], "mesh": key(*a)[1], "tokenId": a[2], "expiresAt": 1}})


async def test_dataplane_keys_stay_private_and_the_trust_holds_public_keys_only() -> None:
    manager = await with_meshes("default", "a.b")
    await TokenAuthority(manager, DATAPLANE, "a.b", clock=lambda: NOW).issue(
        "web", 600)
    assert not (await manager.list("Secret", "a.b")).items
    keys = (await manager.list("GlobalSecret", None, {KEY_LABEL: DATAPLANE})).items
    assert [k.labels["gossamer.io/mesh"] for k in keys] == ["a.b"]
    trust = await manager.get("TokenTrust", "dataplane.a.b")
    assert "PRIVATE" not in json.dumps(trust.spec_dict()) and trust.spec_dict()["keys"]


async def test_verifying_never_makes_a_key() -> None:
    manager = await with_meshes("default")
    forged, _ = issue(SigningKey.generate(NOW), DATAPLANE, "web", 600, mesh="default",
                      now=lambda: NOW)
    with pytest.raises(TokenRejected, match="unknown-key"):
        await TokenAuthority(manager, DATAPLANE, "default", clock=lambda: NOW).verify(forged)
    assert not (await manager.list("GlobalSecret")).items
    assert not (await manager.list("TokenTrust")).items


async def test_a_zone_verifies_with_the_trust_the_global_sent_it() -> None:
    signer = await with_meshes("default")
    token, claims = await TokenAuthority(signer, DATAPLANE, "default",
                                         clock=lambda: NOW).issue("web", 600)
    zone = await with_meshes("default")
    trust = await signer.get("TokenTrust", "dataplane.default")
    await zone.apply(Resource(type="TokenTrust", name=trust.name, spec=trust.spec,
                              labels={ORIGIN_LABEL: "global"}))
    verifier = TokenAuthority(zone, DATAPLANE, "default", clock=lambda: NOW)
    assert (await verifier.verify(token)).token_id == claims.token_id
    assert not (await zone.list("GlobalSecret")).items


@pytest.mark.parametrize(("token_id", "expires_at", "field"), [
    ("abc", -1, "expiresAt"), ("abc", 0, "expiresAt"), ("abc", int(NOW) - 1, "expiresAt"),
    ("abc", int(NOW) + 11 * 365 * 24 * 3600, "expiresAt"), ("ABC", None, "id"),
    ("a.b", None, "id"), ("", None, "id"), ("a" * 129, None, "id")])
async def test_bad_revocations_are_refused_and_store_nothing(
        token_id: str, expires_at: int | None, field: str) -> None:
    manager = await with_meshes("default")
    authority = TokenAuthority(manager, DATAPLANE, "default", clock=lambda: NOW)
    token, _ = await authority.issue("web", 600)
    with pytest.raises(InvalidResource) as info:
        await authority.revoke(token_id, expires_at)
    assert info.value.http_status == 400
    assert [e.path for e in info.value.field_errors] == [field]
    assert not (await manager.list("TokenRevocation")).items
    assert (await authority.verify(token)).subject == "web"
    await authority.issue("web", 600)


async def test_older_stores_are_moved_and_old_tokens_keep_verifying() -> None:
    manager = await with_meshes("default")
    old_key = SigningKey.generate(NOW)
    token, claims = issue(old_key, DATAPLANE, "web", 600, mesh="default", now=lambda: NOW)
    revoked, revoked_claims = issue(old_key, DATAPLANE, "db", 600, mesh="default",
                                    now=lambda: NOW)

    def secret(data: bytes) -> SecretSpec:
        return SecretSpec(data=base64.b64encode(data).decode())

    await manager.apply(Resource(type="Secret", mesh="default", spec=secret(old_key.to_pem()),
                                 name=f"dataplane-token-signing-key-{old_key.kid}",
                                 labels={KEY_LABEL: DATAPLANE}))
    entries = {revoked_claims.token_id: revoked_claims.expires_at, "bad": -1}
    await manager.apply(Resource(type="Secret", mesh="default", name="dataplane-token-revocations",
                                 labels={"gossamer.io/revocations": DATAPLANE},
                                 spec=secret(json.dumps(entries).encode())))
    await migrate_token_state(manager, clock=lambda: NOW)
    assert not (await manager.list("Secret", "default")).items
    authority = TokenAuthority(manager, DATAPLANE, "default", clock=lambda: NOW)
    assert (await authority.verify(token)).token_id == claims.token_id
    with pytest.raises(TokenRejected, match="revoked"):
        await authority.verify(revoked)
    trust = await manager.get("TokenTrust", "dataplane.default")
    kids = {k["kid"] for k in trust.spec_dict()["keys"]}  # the moved key and a fresh one
    assert old_key.kid in kids and len(kids) == 2


async def test_revocations_are_dropped_when_their_token_would_have_expired() -> None:
    manager = await with_meshes("default")
    authority = TokenAuthority(manager, DATAPLANE, "default")
    now = int(time.time())
    await authority.revoke("soon", now + 2)
    await authority.revoke("later", now + 3600)
    upkeep = asyncio.create_task(TokenUpkeep(manager).run())
    try:
        async def remaining() -> set[str]:
            return {r.spec.token_id for r in (await manager.list("TokenRevocation")).items}

        async def only_later() -> bool:
            return await remaining() == {"later"}

        await eventually(only_later, timeout=5)
        await authority.revoke("next", int(time.time()) + 2)  # the timer moves earlier
        assert "next" in await remaining()
        await eventually(only_later, timeout=5)
    finally:
        upkeep.cancel()


async def test_a_deleted_mesh_takes_its_signing_keys_along() -> None:
    manager = await with_meshes("default", "pay")
    token, _ = await TokenAuthority(manager, DATAPLANE, "pay").issue("web", 600)
    upkeep = asyncio.create_task(TokenUpkeep(manager).run())
    try:
        await manager.delete("Mesh", "pay")
        await eventually(lambda: _no_keys_of(manager, "pay"), timeout=5)
        await eventually(lambda: _empty(manager, "TokenTrust", "dataplane.pay"), timeout=5)
        await manager.apply(parse_document({"type": "Mesh", "name": "pay"}))
        with pytest.raises(TokenRejected, match="unknown-key"):
            await TokenAuthority(manager, DATAPLANE, "pay").verify(token)
    finally:
        upkeep.cancel()


async def _no_keys_of(manager: ResourceManager, mesh: str) -> bool:
    return not (await manager.list("GlobalSecret", None, {KEY_LABEL: DATAPLANE,
                                                          "gossamer.io/mesh": mesh})).items


async def _empty(manager: ResourceManager, kind: str, name: str = "") -> bool:
    items = (await manager.list(kind)).items
    return not [r for r in items if not name or r.name == name]
