"""Signing keys and revocations kept in a store (here a memory store)."""

from __future__ import annotations

import pytest

from authority.token_authority import TokenAuthority
from gossamer.model.registry import parse_document
from gossamer.resources import ResourceManager
from gossamer.store.memory import MemoryStore
from gossamer.tokens import TokenRejected

NOW = 1_800_000_000.0


@pytest.fixture
async def authority() -> TokenAuthority:
    return TokenAuthority(ResourceManager(MemoryStore()), "zone", clock=lambda: NOW)


async def test_issue_verify_and_revoke(authority: TokenAuthority) -> None:
    token, claims = await authority.issue("east", 3600, scopes=["cp"])
    assert (await authority.verify(token, subject="east", scope="cp")).token_id == claims.token_id
    await authority.revoke(claims.token_id, claims.expires_at)
    with pytest.raises(TokenRejected) as info:
        await authority.verify(token, subject="east")
    assert info.value.reason == "revoked"


async def test_rotation_keeps_old_tokens_valid_until_key_deleted(authority: TokenAuthority) -> None:
    old, _ = await authority.issue("east", 3600)
    first_kid = next(iter((await authority.keys()).public))
    new_key = await authority.rotate()
    ring = await authority.keys()
    assert set(ring.public) == {first_kid, new_key.kid}
    newer, _ = await authority.issue("east", 3600)
    assert (await authority.verify(old)).subject == "east"
    assert (await authority.verify(newer)).subject == "east"
    # Deleting the old key's secret retires its tokens.
    manager = authority.manager
    await manager.delete("GlobalSecret", f"zone-token-signing-key-{first_kid}")
    with pytest.raises(TokenRejected) as info:
        await authority.verify(old)
    assert info.value.reason == "unknown-key"
    assert (await authority.verify(newer)).subject == "east"


async def test_dataplane_tokens_are_per_mesh() -> None:
    manager = ResourceManager(MemoryStore())
    for mesh in ("default", "payments"):
        await manager.apply(parse_document({"type": "Mesh", "name": mesh}))
    default = TokenAuthority(manager, "dataplane", mesh="default", clock=lambda: NOW)
    payments = TokenAuthority(manager, "dataplane", mesh="payments", clock=lambda: NOW)
    token, _ = await default.issue("backend", 600)
    assert (await default.verify(token, subject="backend")).mesh == "default"
    with pytest.raises(TokenRejected) as info:
        await payments.verify(token)
    assert info.value.reason in {"unknown-key", "wrong-mesh"}


async def test_published_trust_verifies_elsewhere_and_follows_revocation() -> None:
    from authority.token_authority import verify_with_trust

    signer = ResourceManager(MemoryStore())
    authority = TokenAuthority(signer, "zone", clock=lambda: NOW, publish_trust=True)
    token, claims = await authority.issue("east", 3600, scopes=["ingress"])
    # Another control plane holding only the published TokenTrust (as a zone would).
    elsewhere = ResourceManager(MemoryStore())
    trust = await signer.get("TokenTrust", "zone")
    await elsewhere.apply(trust)
    got = await verify_with_trust(elsewhere, token, "zone", subject="east", scope="ingress",
                                  now=lambda: NOW)
    assert got.token_id == claims.token_id
    assert "PRIVATE" not in str(trust.spec)

    await authority.revoke(claims.token_id, claims.expires_at)
    # The revocation reaches the other control plane as its own row, as the sync brings it.
    (row,) = (await signer.list("TokenRevocation")).items
    await elsewhere.apply(row)
    with pytest.raises(TokenRejected) as info:
        await verify_with_trust(elsewhere, token, "zone", now=lambda: NOW)
    assert info.value.reason == "revoked"


async def test_verify_with_trust_before_any_trust_arrived() -> None:
    from authority.token_authority import verify_with_trust

    with pytest.raises(TokenRejected) as info:
        await verify_with_trust(ResourceManager(MemoryStore()), "x.y.z", "zone")
    assert info.value.reason == "unknown-key"
