"""Retiring a dataplane signing key at the global reaches a federated zone, over the sync.

A real global and a real federated zone (sqlite stores, the zone sync over TLS): the
global rotates a mesh's key through ``POST /tokens/dataplane/signing-keys``; deleting the
old key's GlobalSecret at the global takes it out of the zone's ``TokenTrust`` within
seconds, and the zone's agent API then refuses the tokens it signed (UNAUTHENTICATED),
while tokens of the new key keep verifying. A mesh created at the global verifies its
tokens at the zone with no token issued first.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from authority.token_authority import TokenAuthority, key_secret_name
from global_cp.app import GlobalControlPlane
from gossamer.errors import NotFound, Unauthorized
from gossamer.model.registry import parse_document
from gossamer.resources import ResourceManager
from gossamer.tokens import DATAPLANE
from tests.cluster import start_global, start_zone
from tests.waiting import eventually


@pytest.fixture
async def global_cp(tmp_path: Path) -> AsyncIterator[GlobalControlPlane]:
    cp = await start_global(tmp_path / "global", heartbeat=0.2, timeout=2.0)
    yield cp
    await cp.stop()


async def post(cp: GlobalControlPlane, path: str, body: dict[str, Any]) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=cp.api_url, timeout=10, headers={
            "authorization": f"Bearer {cp.admin_token}"}) as api:
        response = await api.post(path, json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def trusted_kids(manager: ResourceManager, mesh: str) -> set[str]:
    try:
        trust = await manager.get("TokenTrust", f"dataplane.{mesh}")
    except NotFound:
        return set()
    return {k["kid"] for k in trust.spec_dict()["keys"]}


async def test_a_key_deleted_at_the_global_stops_verifying_at_the_zone(
        global_cp: GlobalControlPlane, tmp_path: Path) -> None:
    await post(global_cp, "/_apply", {"documents": [{"type": "Mesh", "name": "pay"}]})
    old = await post(global_cp, "/tokens/dataplane", {"mesh": "pay", "service": "web"})
    # The key that signed it (a mesh's first key can be made twice when its creation
    # races the Mesh's own publication: both then verify, and only this one is retired).
    old_kid = jwt.get_unverified_header(old["token"])["kid"]
    rotated = await post(global_cp, "/tokens/dataplane/signing-keys", {"mesh": "pay"})
    assert rotated["kid"] != old_kid and rotated["mesh"] == "pay"
    new = await post(global_cp, "/tokens/dataplane", {"mesh": "pay", "service": "web"})
    zone = await start_zone(global_cp, "east", tmp_path / "zone-east", heartbeat=0.2,
                            timeout=2.0)
    try:
        auth = zone.parts.agents.auth

        async def both_verify() -> bool:
            try:
                for issued in (old, new):
                    await auth.admit(issued["token"])
            except Unauthorized:
                return False
            return True

        await eventually(both_verify, timeout=15)  # rotating kept the old key verifying
        await global_cp.zone_tokens.manager.store.delete(
            "GlobalSecret", key_secret_name(DATAPLANE, "pay", old_kid))

        async def dropped_at_the_zone() -> bool:
            kids = await trusted_kids(zone.manager, "pay")
            return old_kid not in kids and rotated["kid"] in kids

        await eventually(dropped_at_the_zone, timeout=10)
        with pytest.raises(Unauthorized) as info:
            await auth.admit(old["token"])
        assert info.value.grpc_status == "UNAUTHENTICATED"
        assert (await auth.admit(new["token"])).token_id == new["id"]
        async with httpx.AsyncClient(base_url=zone.api_url, timeout=10, headers={
                "authorization": f"Bearer {zone.admin_token}"}) as api:
            response = await api.post("/tokens/dataplane/signing-keys", json={"mesh": "pay"})
        assert response.status_code == 409, response.text  # the global rotates, not a zone
    finally:
        await zone.stop()


async def test_a_new_mesh_verifies_at_the_zone_with_no_token_issued_first(
        global_cp: GlobalControlPlane, tmp_path: Path) -> None:
    zone = await start_zone(global_cp, "east", tmp_path / "zone-east", heartbeat=0.2,
                            timeout=2.0)
    try:
        await post(global_cp, "/_apply", {"documents": [{"type": "Mesh", "name": "fresh"}]})

        async def trust_arrived() -> bool:
            return len(await trusted_kids(zone.manager, "fresh")) == 1

        await eventually(trust_arrived, timeout=15)
        token = await post(global_cp, "/tokens/dataplane", {"mesh": "fresh", "service": "web"})
        assert (await zone.parts.agents.auth.admit(token["token"])).subject == "web"
        assert not (await zone.manager.list("GlobalSecret", None, {
            "gossamer.io/signing-key": DATAPLANE})).items
    finally:
        await zone.stop()


async def test_a_federated_zone_refuses_tokens_of_its_own_keys(tmp_path: Path) -> None:
    """Keys in a federated zone's store (left by a standalone past, or planted) admit
    nothing while the global has sent no TokenTrust: the zone is not a signer."""
    global_cp = await start_global(tmp_path / "global", heartbeat=0.2, timeout=2.0)
    zone = await start_zone(global_cp, "east", tmp_path / "zone-east", heartbeat=0.2,
                            timeout=2.0)
    try:
        async def has_default() -> bool:
            try:
                await zone.manager.get("Mesh", "default")
            except NotFound:
                return False
            return True

        await eventually(has_default, timeout=15)
        await global_cp.stop()  # no trust for this mesh can arrive any more
        # A mesh in the zone's store that the global never published trust for, and a
        # key of the zone's own for it (the TokenTrust it writes has no global origin).
        await zone.manager.apply(parse_document({"type": "Mesh", "name": "local"}))
        token, _ = await TokenAuthority(zone.manager, DATAPLANE, "local").issue("web", 600)
        assert (await zone.manager.list("GlobalSecret", None, {
            "gossamer.io/signing-key": DATAPLANE, "gossamer.io/mesh": "local"})).items
        with pytest.raises(Unauthorized) as info:
            await zone.parts.agents.auth.admit(token)
        assert info.value.grpc_status == "UNAUTHENTICATED"
    finally:
        await zone.stop()
