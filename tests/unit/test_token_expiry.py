"""The shell that ends holds on tokens (``zone_cp.token_expiry``) over a real memory store:
a stored revocation ends the holds on its token only, also when the watch fell behind the
store's retention and the revocation's event is gone; a hold taken just after its
token's revocation was seen ends at once; an expired token's hold ends at its ``exp``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

import pytest

from gossamer.model.base import Resource
from gossamer.model.registry import parse_document
from gossamer.model.tokenrevocation import TokenRevocationSpec
from gossamer.store.memory import MemoryStore
from gossamer.tokens import DATAPLANE, ZONE, Claims
from tests.waiting import eventually
from zone_cp.token_deadlines import Withdrawn
from zone_cp.token_expiry import TokenLifetimes


def claims(token_id: str, kind: str = DATAPLANE, expires_in: float = 3600) -> Claims:
    now = int(time.time())
    return Claims(kind=kind, subject="backend" if kind == DATAPLANE else "east",
                  token_id=token_id, issued_at=now, expires_at=now + int(expires_in),
                  mesh="default" if kind == DATAPLANE else "")


def revocation(c: Claims) -> Resource:
    spec = TokenRevocationSpec(purpose=c.kind, mesh=c.mesh,  # type: ignore[arg-type]
                               token_id=c.token_id, expires_at=c.expires_at)
    return Resource(type="TokenRevocation", name=spec.name, spec=spec)


@contextlib.asynccontextmanager
async def running(store: MemoryStore) -> AsyncIterator[TokenLifetimes]:
    lifetimes = TokenLifetimes(store)
    task = asyncio.create_task(lifetimes.run())
    await asyncio.wait_for(lifetimes.watching.wait(), 5)
    try:
        yield lifetimes
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
async def store() -> MemoryStore:
    return MemoryStore()


async def test_a_stored_revocation_ends_the_holds_on_its_token_only(store: MemoryStore) -> None:
    async with running(store) as lifetimes:
        revoked, kept = claims("a1"), claims("b2")
        first, second, other = (lifetimes.hold(revoked), lifetimes.hold(revoked),
                                lifetimes.hold(kept))
        ended: list[Withdrawn] = []
        first.on_end(ended.append)
        await store.create(revocation(revoked))
        await eventually(lambda: first.withdrawn and second.withdrawn, timeout=5,
                         what="both holds on the revoked token to end")
        assert ended == [Withdrawn("revoked", "a1")]
        assert other.withdrawn is None and len(lifetimes) == 1
        # A hold taken right after the revocation was seen (a registration that checked
        # the token just before it was stored) ends at once.
        late = lifetimes.hold(revoked)
        assert late.withdrawn == Withdrawn("revoked", "a1")
        other.release()
        assert len(lifetimes) == 0


async def test_a_revocation_missed_by_a_lagging_watch_is_found_again(
        caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryStore(retention=2)
    async with running(store) as lifetimes:
        zone, dataplane = claims("c3", kind=ZONE), claims("d4")
        held = [lifetimes.hold(zone), lifetimes.hold(dataplane), lifetimes.hold(claims("e5"))]
        with caplog.at_level(logging.WARNING, logger="zone_cp.token_expiry"):
            # Written without yielding to the watch: their events leave the retention
            # before it reads them, so only looking the held tokens up again finds them.
            await store.create(revocation(zone))
            await store.create(revocation(dataplane))
            for n in range(4):
                await store.create(parse_document({"type": "Mesh", "name": f"m{n}"}))
            await eventually(lambda: held[0].withdrawn and held[1].withdrawn, timeout=5,
                             what="the revoked tokens' holds to end")
        assert [h.withdrawn for h in held] == [
            Withdrawn("revoked", "c3"), Withdrawn("revoked", "d4"), None]
        assert any("revocation watch interrupted" in r.getMessage() for r in caplog.records)


async def test_a_hold_ends_at_its_tokens_expiry(store: MemoryStore) -> None:
    async with running(store) as lifetimes:
        soon = lifetimes.hold(claims("f6", expires_in=1))
        later = lifetimes.hold(claims("g7", expires_in=3600))
        started = time.monotonic()
        await eventually(lambda: soon.withdrawn, timeout=5, what="the hold to expire")
        assert time.monotonic() - started <= 2.0
        assert soon.withdrawn == Withdrawn("expired", "f6") and later.withdrawn is None
        # An already expired token's hold ends straight away.
        past = lifetimes.hold(claims("h8", expires_in=-5))
        await eventually(lambda: past.withdrawn, timeout=1, what="the past hold to end")
