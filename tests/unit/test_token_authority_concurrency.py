"""A publishing TokenAuthority under concurrent callers, on a store with real I/O.

The global verifies every zone's token with ``keys()``, and each call may publish the
``TokenTrust``. On the SQLite store each call is a round trip to another thread, so
concurrent callers interleave as they do in production: one that publishes from a
version another caller has just replaced would get ``Conflict``. These tests check
that no caller sees an error and that the TokenTrust changes once per real change,
never when nothing changed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from authority.token_authority import TokenAuthority
from gossamer.model.tokenrevocation import TokenRevocationSpec
from gossamer.model.tokentrust import TokenTrustSpec
from gossamer.resources import ResourceManager
from gossamer.store.sqlite import SqliteStore
from gossamer.tokens import TokenRejected

NOW = 1_800_000_000.0
CALLERS = 40
ROUNDS = 10


@pytest.fixture
async def manager(tmp_path: Path) -> AsyncIterator[ResourceManager]:
    store = await SqliteStore.open(tmp_path / "store.db")
    try:
        yield ResourceManager(store)
    finally:
        await store.close()


def publisher(manager: ResourceManager) -> TokenAuthority:
    return TokenAuthority(manager, "zone", clock=lambda: NOW, publish_trust=True)


async def trust(manager: ResourceManager) -> tuple[int, TokenTrustSpec]:
    res = await manager.get("TokenTrust", "zone")
    assert isinstance(res.spec, TokenTrustSpec)
    return res.meta.version, res.spec


async def crowd(*authorities: TokenAuthority, token: str) -> None:
    """``CALLERS`` concurrent calls, half ``keys()`` and half ``verify``, spread over
    ``authorities``; any exception fails the test (gather re-raises the first)."""
    calls = []
    for i in range(CALLERS):
        authority = authorities[i % len(authorities)]
        calls.append(authority.keys() if i % 2 else authority.verify(token, subject="east"))
    await asyncio.gather(*calls)


async def test_concurrent_calls_publish_nothing_when_nothing_changed(
        manager: ResourceManager) -> None:
    authority = publisher(manager)
    token, _ = await authority.issue("east", 3600)
    before = await trust(manager)
    await crowd(authority, token=token)
    assert await trust(manager) == before


async def test_revocations_leave_the_trust_alone_and_are_refused_at_once(
        manager: ResourceManager) -> None:
    """A revocation is a row of its own: the TokenTrust (public keys) does not change,
    and concurrent verifiers refuse the revoked token with one get each."""
    authority = publisher(manager)
    token, _ = await authority.issue("east", 3600)
    before = await trust(manager)
    other = TokenAuthority(manager, "zone", clock=lambda: NOW)
    for _ in range(ROUNDS):
        revoked_token, claims = await authority.issue("east", 3600)
        await other.revoke(claims.token_id, claims.expires_at)
        await crowd(authority, token=token)
        outcomes = await asyncio.gather(*(authority.verify(revoked_token) for _ in range(4)),
                                        return_exceptions=True)
        assert all(isinstance(o, TokenRejected) and o.reason == "revoked" for o in outcomes)
    assert await trust(manager) == before


async def test_two_authorities_on_one_store_race_without_conflict(
        manager: ResourceManager) -> None:
    """Two publishers (two global replicas) share the store: no lock between them, so
    their writes collide and the loser reads again."""
    first, second = publisher(manager), publisher(manager)
    token, _ = await first.issue("east", 3600)
    for round_ in range(1, ROUNDS + 1):
        new_key = await TokenAuthority(manager, "zone", clock=lambda: NOW).rotate()
        await crowd(first, second, token=token)
        version, published = await trust(manager)
        assert version == 1 + round_
        assert new_key.kid in {k.kid for k in published.keys}
    # Nothing changed since: nobody writes.
    await crowd(first, second, token=token)
    assert (await trust(manager))[0] == 1 + ROUNDS
    with pytest.raises(TokenRejected):
        await first.verify(token, subject="west")


async def revoked_ids(manager: ResourceManager) -> set[str]:
    return {r.spec.token_id for r in (await manager.list("TokenRevocation")).items
            if isinstance(r.spec, TokenRevocationSpec)}


async def test_concurrent_revocations_are_all_kept(manager: ResourceManager) -> None:
    """Each revocation is its own row: none may be lost, however many run at once."""
    authority = publisher(manager)
    issued = await asyncio.gather(*(authority.issue("east", 3600) for _ in range(CALLERS)))
    await asyncio.gather(*(authority.revoke(c.token_id, c.expires_at) for _, c in issued))
    assert await revoked_ids(manager) == {c.token_id for _, c in issued}
    for token, _ in issued:
        with pytest.raises(TokenRejected, match="revoked"):
            await authority.verify(token)


async def test_revocations_from_two_authorities_are_all_kept(manager: ResourceManager) -> None:
    """Two authorities on one store (no shared lock), revoking the same ids at once with
    different expiries: every id is kept, with the later expiry."""
    first, second = publisher(manager), TokenAuthority(manager, "zone", clock=lambda: NOW)
    issued = [claims for _, claims in
              await asyncio.gather(*(first.issue("east", 3600) for _ in range(7)))]
    await asyncio.gather(*(authority.revoke(c.token_id, c.expires_at + extra)
                           for c in issued for authority, extra in ((first, 0), (second, 9))))
    assert await revoked_ids(manager) == {c.token_id for c in issued}
    rows = (await manager.list("TokenRevocation")).items
    assert {r.spec.expires_at for r in rows} == {c.expires_at + 9 for c in issued}
