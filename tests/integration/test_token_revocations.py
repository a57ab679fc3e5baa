"""Revocations at scale and bad revocation input, through the global's HTTP API.

One revocation is one ``TokenRevocation`` row, so a mesh with 100,000 of them still
takes another, and verifying a token is one store get however many there are. Bad
input (an expiry not ahead of now or beyond the longest a token lives, a malformed id)
is refused with 400 naming the field and stores nothing; tokens keep verifying and
issuing, and a revoked zone is still cut off.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from authority.token_authority import TokenAuthority
from global_cp.app import GlobalControlPlane
from gossamer.model.base import Resource
from gossamer.model.tokenrevocation import TokenRevocationSpec
from gossamer.store.base import Create
from gossamer.tokens import DATAPLANE, TokenRejected
from tests.cluster import start_global, start_zone
from tests.waiting import eventually

ROWS = 100_000
THROUGH_API = 50
BATCH = 5_000


@pytest.fixture
async def global_cp(tmp_path: Path) -> AsyncIterator[GlobalControlPlane]:
    cp = await start_global(tmp_path / "global", heartbeat=0.2, timeout=2.0)
    yield cp
    await cp.stop()


@pytest.fixture
async def api(global_cp: GlobalControlPlane) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=global_cp.api_url, timeout=30, headers={
            "authorization": f"Bearer {global_cp.admin_token}"}) as client:
        yield client


async def post(api: httpx.AsyncClient, path: str, body: dict[str, Any],
               status: int = 200) -> dict[str, Any]:
    response = await api.post(path, json=body)
    assert response.status_code == status, response.text
    answer: dict[str, Any] = response.json()
    return answer


def row(token_id: str, expires_at: int) -> Resource:
    spec = TokenRevocationSpec(purpose=DATAPLANE, mesh="default", token_id=token_id,
                               expires_at=expires_at)
    return Resource(type="TokenRevocation", name=spec.name, spec=spec)


async def test_a_mesh_takes_100k_revocations_and_still_revokes_and_verifies(
        global_cp: GlobalControlPlane, api: httpx.AsyncClient) -> None:
    manager = global_cp.zone_tokens.manager
    keep = await post(api, "/tokens/dataplane", {"mesh": "default", "service": "web"})
    doomed = await post(api, "/tokens/dataplane", {"mesh": "default", "service": "web"})
    expires = int(time.time()) + 3600
    # Setup in batches (the fast path), then some through the API like any operator.
    for start in range(0, ROWS - THROUGH_API, BATCH):
        count = min(BATCH, ROWS - THROUGH_API - start)
        await manager.store.write([Create(row(secrets.token_hex(16), expires))
                                   for _ in range(count)])
    for _ in range(THROUGH_API):
        await post(api, "/tokens/dataplane/revoke",
                   {"id": secrets.token_hex(16), "expiresAt": expires, "mesh": "default"})
    assert (await manager.list("TokenRevocation", limit=1)).total == ROWS

    started = time.monotonic()
    await post(api, "/tokens/dataplane/revoke",
               {"id": doomed["id"], "expiresAt": doomed["expiresAt"], "mesh": "default"})
    authority = TokenAuthority(manager, DATAPLANE, "default")
    with pytest.raises(TokenRejected, match="revoked"):
        await authority.verify(doomed["token"])
    assert (await authority.verify(keep["token"])).token_id == keep["id"]
    await post(api, "/tokens/dataplane", {"mesh": "default", "service": "web"})
    assert time.monotonic() - started < 5, "one revocation and one verify must not scan"
    assert (await manager.list("TokenRevocation", limit=1)).total == ROWS + 1


BAD = [
    ({"id": "abc", "expiresAt": -1}, "expiresAt"),
    ({"id": "abc", "expiresAt": 0}, "expiresAt"),
    ({"id": "abc", "expiresAt": 1_000_000_000}, "expiresAt"),
    ({"id": "abc", "expiresAt": int(time.time()) + 20 * 365 * 24 * 3600}, "expiresAt"),
    ({"id": "ABC"}, "id"),
    ({"id": "a.b"}, "id"),
    ({"id": "a" * 129}, "id"),
]


async def test_bad_revocations_are_400_store_nothing_and_break_nothing(
        global_cp: GlobalControlPlane, api: httpx.AsyncClient, tmp_path: Path) -> None:
    zone = await start_zone(global_cp, "east", tmp_path / "zone-east", heartbeat=0.2,
                            timeout=2.0)
    try:
        await eventually(lambda: zone.sync.status.connected, timeout=15)
        token = await post(api, "/tokens/dataplane", {"mesh": "default", "service": "web"})
        for path, extra in (("/tokens/dataplane/revoke", {"mesh": "default"}),
                            ("/tokens/zone/revoke", {})):
            for body, field in BAD:
                answer = await post(api, path, {**body, **extra}, status=400)
                assert field in str(answer), answer
        await post(api, "/tokens/dataplane/revoke", {"id": "abc", "mesh": "nope"}, status=404)
        manager = global_cp.zone_tokens.manager
        assert not (await manager.list("TokenRevocation")).items
        # Verifying and issuing work as before, for both kinds of token.
        authority = TokenAuthority(manager, DATAPLANE, "default")
        assert (await authority.verify(token["token"])).token_id == token["id"]
        await post(api, "/tokens/dataplane", {"mesh": "default", "service": "web"})
        await post(api, "/tokens/zone", {"zone": "west"})
        # And the global still cuts a revoked zone off at once.
        assert zone.settings.token_file is not None
        zone_token = zone.settings.token_file.read_text().strip()
        claims = await global_cp.zone_tokens.verify(zone_token)
        await post(api, "/tokens/zone/revoke", {"id": claims.token_id})
        await eventually(lambda: "revoked" in zone.sync.status.last_error, timeout=10)
    finally:
        await zone.stop()
