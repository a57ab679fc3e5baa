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

from gossamer.model.tokentrust import TokenTrustSpec
from gossamer.resources import ResourceManager
from gossamer.store.sqlite import SqliteStore
from gossamer.token_authority import TokenAuthority
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


async def test_concurrent_calls_after_a_revocation_publish_it_once(
        manager: ResourceManager) -> None:
    authority = publisher(manager)
    token, _ = await authority.issue("east", 3600)
    version, published = await trust(manager)
    assert not published.revoked
    # Revoked without publishing (as by another replica that has not published yet): the
    # stored TokenTrust is now behind, and every caller below finds it so. Whether two
    # callers collide depends on thread timing, so the race is run several times.
    other = TokenAuthority(manager, "zone", clock=lambda: NOW)
    revoked = []
    for _ in range(ROUNDS):
        _, claims = await authority.issue("east", 3600)
        await other.revoke(claims.token_id, claims.expires_at)
        revoked.append(claims.token_id)
        await crowd(authority, token=token)
        version, published = await trust(manager)
        assert sorted(r.id for r in published.revoked) == sorted(revoked)
    assert version == 1 + ROUNDS


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


async def test_concurrent_revocations_are_all_kept(manager: ResourceManager) -> None:
    """Each revocation rewrites the one revocations secret: none may overwrite another."""
    authority = publisher(manager)
    issued = [claims for _, claims in
              await asyncio.gather(*(authority.issue("east", 3600) for _ in range(CALLERS)))]
    await asyncio.gather(*(authority.revoke(c.token_id, c.expires_at) for c in issued))
    want = {c.token_id for c in issued}
    assert set((await authority.keys()).revoked) == want
    assert {r.id for r in (await trust(manager))[1].revoked} == want


async def test_revocations_from_two_authorities_are_all_kept(manager: ResourceManager) -> None:
    """Two authorities on one store (no shared lock): their writes collide and the loser
    reads the other's revocation before adding its own."""
    first, second = publisher(manager), TokenAuthority(manager, "zone", clock=lambda: NOW)
    issued = [claims for _, claims in
              await asyncio.gather(*(first.issue("east", 3600) for _ in range(7)))]
    # The secret exists before the race: concurrent *first* writes are the one case
    # compare-and-set through ResourceManager.apply cannot cover (see _compare_and_set).
    await first.revoke(issued[6].token_id, issued[6].expires_at)
    await asyncio.gather(*(authority.revoke(c.token_id, c.expires_at)
                           for authority, c in zip([first, second] * 3, issued[:6],
                                                   strict=True)))
    want = {c.token_id for c in issued}
    assert set((await second.keys()).revoked) == want
    # second does not publish: the publisher's next call brings the TokenTrust in step.
    assert set((await first.keys()).revoked) == want
    assert {r.id for r in (await trust(manager))[1].revoked} == want
