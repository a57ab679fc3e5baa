"""Two global replicas on one real PostgreSQL answer ``inspect zones`` alike.

A zone connects (real gRPC, TLS) to one replica; the other has no stream of it, yet its
``/zones/_overviews`` says Online from the stored insights, and once the zone stops both
replicas give the very same answer (Offline, the same counts).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from global_cp.app import GlobalControlPlane
from tests.cluster import start_global, start_zone
from tests.integration.federation_env import BEAT, DEAD_AFTER, stop_or_show
from tests.waiting import eventually

pytestmark = pytest.mark.postgres


@pytest.fixture
async def replicas(tmp_path: Path,
                   postgres_db_url: str) -> AsyncIterator[list[GlobalControlPlane]]:
    started = [await start_global(tmp_path / "a", postgres_db_url, BEAT, DEAD_AFTER)]
    started.append(await start_global(tmp_path / "b", postgres_db_url, BEAT, DEAD_AFTER))
    yield started
    for cp in started:
        await stop_or_show(cp)


async def zones(cp: GlobalControlPlane) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=cp.api_url, headers={
            "Authorization": f"Bearer {cp.admin_token}"}) as client:
        response = await client.get("/zones/_overviews")
    response.raise_for_status()
    return list(response.json()["items"])


async def test_inspect_zones_is_the_same_on_every_replica(
        tmp_path: Path, replicas: list[GlobalControlPlane]) -> None:
    a, b = replicas
    assert a.admin_token == b.admin_token
    zone = await start_zone(a, "east", tmp_path / "zone-east", heartbeat=BEAT,
                            timeout=DEAD_AFTER)
    try:
        async def online_at_b() -> bool:
            items = await zones(b)
            return any(i["name"] == "east" and i["insight"]["status"] == "Online"
                       for i in items)

        await eventually(online_at_b, 20, "replica b to see the zone online")
        assert not b.insights.all()  # b has no stream of its own: the store told it
    finally:
        await stop_or_show(zone)

    async def same_offline() -> bool:
        left, right = await zones(a), await zones(b)
        status = [i["insight"]["status"] for i in left if i["name"] == "east"]
        return status == ["Offline"] and left == right

    await eventually(same_offline, 20, "both replicas to give the same answer, Offline")
