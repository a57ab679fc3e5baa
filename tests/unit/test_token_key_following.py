"""Signing keys retire for real, and only a signer trusts keys of its own.

On memory stores with the real ``TokenUpkeep``: a deleted key GlobalSecret leaves the
``TokenTrust`` (so the zones drop it) and its tokens are refused; a Mesh created gets its
``TokenTrust`` at once; keys moved out of older stores only verify, a fresh key signs.
A verifier that is not the signer (a federated zone) never reads keys of its own.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator

import pytest

from authority.token_authority import TokenAuthority, key_secret_name
from authority.token_upkeep import TokenUpkeep, migrate_token_state
from gossamer.errors import NotFound, Unauthorized
from gossamer.model.base import Resource
from gossamer.model.labels import KEY_LABEL
from gossamer.model.registry import parse_document
from gossamer.model.secret import SecretSpec
from gossamer.resources import ResourceManager
from gossamer.store.memory import MemoryStore
from gossamer.tokens import DATAPLANE, SigningKey, TokenRejected, issue, peek
from tests.waiting import eventually
from zone_cp.agent_auth import AgentAuth


async def with_meshes(*meshes: str) -> ResourceManager:
    manager = ResourceManager(MemoryStore())
    for mesh in meshes:
        await manager.apply(parse_document({"type": "Mesh", "name": mesh}))
    return manager


@pytest.fixture
async def signer() -> AsyncIterator[ResourceManager]:
    manager = await with_meshes("default")
    upkeep = asyncio.create_task(TokenUpkeep(manager).run())
    yield manager
    upkeep.cancel()
    await asyncio.gather(upkeep, return_exceptions=True)


async def trusted_kids(manager: ResourceManager, mesh: str = "default") -> set[str]:
    try:
        trust = await manager.get("TokenTrust", f"dataplane.{mesh}")
    except NotFound:
        return set()
    return {k["kid"] for k in trust.spec_dict()["keys"]}


def kid_of(token: str) -> str:
    header = token.split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"])


async def test_a_deleted_key_leaves_the_trust_and_its_tokens_are_refused(
        signer: ResourceManager) -> None:
    authority = TokenAuthority(signer, DATAPLANE, "default")
    old, _ = await authority.issue("web", 600)
    new_key = await authority.rotate()
    new, _ = await authority.issue("web", 600)
    old_kid = kid_of(old)
    assert kid_of(new) == new_key.kid != old_kid
    await signer.store.delete("GlobalSecret", key_secret_name(DATAPLANE, "default", old_kid))

    async def dropped() -> bool:
        return await trusted_kids(signer) == {new_key.kid}

    await eventually(dropped, timeout=5)  # nobody issued, rotated or pruned since
    with pytest.raises(TokenRejected, match="unknown-key"):
        await authority.verify(old)
    assert (await authority.verify(new)).subject == "web"


async def test_a_mesh_created_gets_its_trust_at_once(signer: ResourceManager) -> None:
    await signer.apply(parse_document({"type": "Mesh", "name": "pay"}))

    async def published() -> bool:
        return len(await trusted_kids(signer, "pay")) == 1

    await eventually(published, timeout=5)
    await signer.delete("Mesh", "pay")

    async def gone() -> bool:
        keys = await signer.list("GlobalSecret", None, {KEY_LABEL: DATAPLANE,
                                                        "gossamer.io/mesh": "pay"})
        return not keys.items and not await trusted_kids(signer, "pay")

    await eventually(gone, timeout=5)


async def test_migrated_keys_only_verify_and_a_fresh_key_signs() -> None:
    manager = await with_meshes("default")
    old_key = SigningKey.generate(1_800_000_000.0)
    old, _ = issue(old_key, DATAPLANE, "web", 600, mesh="default")
    await manager.apply(Resource(
        type="Secret", mesh="default", name=f"dataplane-token-signing-key-{old_key.kid}",
        labels={KEY_LABEL: DATAPLANE},
        spec=SecretSpec(data=base64.b64encode(old_key.to_pem()).decode())))
    await migrate_token_state(manager)
    authority = TokenAuthority(manager, DATAPLANE, "default")
    assert (await authority.verify(old)).subject == "web"
    new, _ = await authority.issue("web", 600)
    assert kid_of(new) != old_key.kid
    assert await trusted_kids(manager) == {old_key.kid, kid_of(new)}
    assert not (await manager.list("Secret", "default")).items
    await migrate_token_state(manager)  # nothing left to move: no other key
    assert len(await trusted_kids(manager)) == 2


async def test_a_non_signer_never_trusts_keys_of_its_own() -> None:
    zone = await with_meshes("default")
    # Keys in the zone's store (left over, or planted) and the TokenTrust they make,
    # without the global's origin label.
    token, _ = await TokenAuthority(zone, DATAPLANE, "default").issue("web", 600)
    assert peek(token) == (DATAPLANE, "default")
    with pytest.raises(TokenRejected, match="unknown-key"):
        await TokenAuthority(zone, DATAPLANE, "default", signer=False).verify(token)
    await zone.store.delete("TokenTrust", "dataplane.default")
    with pytest.raises(TokenRejected, match="unknown-key"):
        await TokenAuthority(zone, DATAPLANE, "default", signer=False).verify(token)
    with pytest.raises(Unauthorized) as info:
        await AgentAuth(zone, signer=False).admit(token)
    assert info.value.grpc_status == "UNAUTHENTICATED"
    # The signer (a standalone zone) does verify with them.
    assert (await AgentAuth(zone).admit(token)).subject == "web"
