"""Who may join the federation: zone tokens and TLS trust, over real gRPC with TLS.

Each refusal is checked from both ends: the zone is not admitted (Offline at the global,
nothing synced) and learns why (``sync.status.last_error`` names the reason), and the
global counts it (``gossamer_sync_rejected_streams_total{reason=...}`` on ``/metrics``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner

from authority.token_authority import TokenAuthority
from cli.main import main as cli
from global_cp.app import GlobalControlPlane
from gossamer.errors import NotFound
from gossamer.model.registry import parse_document
from gossamer.pki.serving import ensure_serving_tls
from gossamer.resources import ResourceManager
from gossamer.tokens import ZONE, SigningKey, issue
from sync.v1 import sync_pb2_grpc
from tests.cluster import sample, scrape, start_global, start_zone, zone_token
from tests.waiting import eventually
from zone_cp.app import ZoneControlPlane
from zone_cp.sync_client import Redial, SyncConfigError

BEAT, DEAD_AFTER = 0.2, 1.0
REJECTED = "gossamer_sync_rejected_streams_total"
# A refused zone keeps trying: every 0.1-0.5 s here (up to 30 s in production), so the
# tests see several refusals quickly.
QUICK_REDIAL = Redial(initial=0.1, maximum=0.5)


@pytest.fixture
async def global_cp(tmp_path: Path) -> AsyncIterator[GlobalControlPlane]:
    cp = await start_global(tmp_path / "global", heartbeat=BEAT, timeout=DEAD_AFTER)
    yield cp
    await cp.stop()


@pytest.fixture
async def zones(tmp_path: Path) -> AsyncIterator[list[ZoneControlPlane]]:
    """Zones a test starts (append them); all stopped at the end."""
    started: list[ZoneControlPlane] = []
    yield started
    for zone in started:
        await zone.stop()


async def zone(global_cp: GlobalControlPlane, zones: list[ZoneControlPlane], name: str,
               tmp_path: Path, **kwargs: object) -> ZoneControlPlane:
    cp = await start_zone(global_cp, name, tmp_path / f"zone-{name}", heartbeat=BEAT,
                          timeout=DEAD_AFTER, **kwargs)  # type: ignore[arg-type]
    cp.sync.redial = QUICK_REDIAL
    zones.append(cp)
    return cp


def token_file(tmp_path: Path, name: str, token: str) -> Path:
    path = tmp_path / name
    path.write_text(token)
    return path


async def online(global_cp: GlobalControlPlane, name: str) -> bool:
    return global_cp.insights.get(name).online


async def has_default_mesh(zone: ZoneControlPlane) -> bool:
    assert zone.store is not None
    try:
        await zone.store.get("Mesh", "default")
    except NotFound:
        return False
    return True


async def assert_refused(global_cp: GlobalControlPlane, zone: ZoneControlPlane,
                         reason: str) -> None:
    """The zone was told ``reason``, the global counted it, and nothing got through."""
    await eventually(lambda: reason in zone.sync.status.last_error,
                     what=f"the zone to be told {reason!r}")
    samples = await eventually(
        lambda: _rejections(global_cp, reason), what=f"a {reason!r} rejection at the global")
    assert samples >= 1
    assert zone.sync.status.attempts >= 1
    assert not zone.sync.status.connected
    assert not await online(global_cp, zone.settings.zone)
    assert not await has_default_mesh(zone)


async def _rejections(global_cp: GlobalControlPlane, reason: str) -> float:
    return sample(await scrape(global_cp.api_url), REJECTED, reason=reason)


async def _more_than(global_cp: GlobalControlPlane, reason: str, count: float) -> bool:
    return await _rejections(global_cp, reason) > count


# -- tokens ---------------------------------------------------------------------------


def test_an_empty_token_file_stops_the_zone_command_before_it_starts(tmp_path: Path) -> None:
    empty = token_file(tmp_path, "empty.token", "")
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    result = CliRunner().invoke(cli, ["zone", "run", "--zone", "east", "--data-dir",
                                      str(tmp_path / "zone"), "--global", "grpcs://127.0.0.1:1",
                                      "--token-file", str(empty), "--global-ca", str(ca)])
    assert result.exit_code == 2
    assert "is empty" in result.output
    assert not (tmp_path / "zone").exists()


async def test_an_empty_token_file_ends_the_zone_sync_with_the_reason(
        global_cp: GlobalControlPlane, zones: list[ZoneControlPlane], tmp_path: Path) -> None:
    east = await zone(global_cp, zones, "east", tmp_path,
                      token_file=token_file(tmp_path, "empty.token", "\n"))
    with pytest.raises(SyncConfigError, match="empty"):
        await asyncio.wait_for(east.wait(), 5)
    assert "empty" in east.sync.status.last_error
    assert global_cp.insights.all() == []


async def test_a_stream_without_a_token_is_refused_as_missing(
        global_cp: GlobalControlPlane) -> None:
    assert global_cp.sync is not None
    creds = grpc.ssl_channel_credentials(global_cp.tls.ca_file.read_bytes())
    async with grpc.aio.secure_channel(f"127.0.0.1:{global_cp.sync.port}", creds) as channel:
        stub = sync_pb2_grpc.ZoneSyncStub(channel)
        for rpc in (stub.GlobalToZone, stub.ZoneToGlobal):
            call = rpc(metadata=(("gossamer-zone", "east"),))
            assert await call.code() == grpc.StatusCode.UNAUTHENTICATED
            assert (await call.details()).startswith("missing:")
    assert await _rejections(global_cp, "missing") == 2
    with pytest.raises(NotFound):  # refused before the zone is recorded
        await ResourceManager(global_cp.store).get("Zone", "east")  # type: ignore[arg-type]


async def test_an_expired_token_is_refused(global_cp: GlobalControlPlane,
                                           zones: list[ZoneControlPlane],
                                           tmp_path: Path) -> None:
    # Issued two hours ago for one hour, with the global's real signing key.
    past = TokenAuthority(global_cp.zone_tokens.manager, ZONE, clock=lambda: time.time() - 7200)
    token, _ = await past.issue("east", 3600, ["cp", "ingress"])
    east = await zone(global_cp, zones, "east", tmp_path,
                      token_file=token_file(tmp_path, "east.token", token))
    await assert_refused(global_cp, east, "expired")


async def test_a_token_that_expires_while_connected_ends_the_stream_then_a_new_one_works(
        global_cp: GlobalControlPlane, zones: list[ZoneControlPlane], tmp_path: Path) -> None:
    path, token_id = await zone_token(global_cp, "east", tmp_path / "east.token",
                                      valid_for=4.0)
    east = await zone(global_cp, zones, "east", tmp_path, token_file=path)
    await eventually(lambda: has_default_mesh(east))
    await eventually(lambda: global_cp.insights.get("east").streams == 2)

    # The expiry ends both streams with its own reason (no heartbeat went missing).
    await eventually(lambda: not global_cp.insights.get("east").online, timeout=10,
                     what="the zone's streams ended at the token's expiry")
    overview = global_cp.insights.get("east").to_json()
    assert f"token {token_id} expired while in use" in overview["lastError"]
    await eventually(lambda: "expired" in east.sync.status.last_error)

    # A fresh token in the same file lets the zone back in on its next attempt.
    await zone_token(global_cp, "east", path)
    await eventually(lambda: global_cp.insights.get("east").online, timeout=60,
                     what="the zone back with a new token")


async def test_a_token_revoked_while_connected_cuts_the_zone_off_at_once(
        global_cp: GlobalControlPlane, zones: list[ZoneControlPlane], tmp_path: Path) -> None:
    path, token_id = await zone_token(global_cp, "east", tmp_path / "east.token")
    east = await zone(global_cp, zones, "east", tmp_path, token_file=path)
    await eventually(lambda: has_default_mesh(east))
    await eventually(lambda: global_cp.insights.get("east").streams == 2)

    await global_cp.zone_tokens.revoke(token_id)
    # Ended by the revocation itself (its own reason, and no heartbeat ever went missing),
    # typically within tens of milliseconds; the deadline allows for a loaded machine.
    await eventually(lambda: not global_cp.insights.get("east").online, timeout=5,
                     what="the zone's streams ended")
    overview = global_cp.insights.get("east").to_json()
    assert overview["status"] == "Offline" and overview["disconnectedAt"]
    assert "revoked while in use" in overview["lastError"]
    await eventually(lambda: "revoked" in east.sync.status.last_error)

    # It keeps trying, and every attempt is refused as revoked, with the reason.
    refusals = await _rejections(global_cp, "revoked")
    attempts = east.sync.status.attempts
    await eventually(lambda: _more_than(global_cp, "revoked", refusals),
                     what="a refused reconnect")
    await eventually(lambda: east.sync.status.attempts > attempts + 1)
    assert "UNAUTHENTICATED: revoked: token rejected (revoked)" in east.sync.status.last_error
    assert not global_cp.insights.get("east").online

    # Nothing reaches it any more: a change made now is still missing after the next
    # refused attempt.
    manager = ResourceManager(global_cp.store)  # type: ignore[arg-type]
    await manager.apply(parse_document({"type": "Mesh", "name": "after-revocation"}))
    refusals = await _rejections(global_cp, "revoked")
    await eventually(lambda: _more_than(global_cp, "revoked", refusals), timeout=5)
    assert east.store is not None
    with pytest.raises(NotFound):
        await east.store.get("Mesh", "after-revocation")


async def test_a_token_for_another_zone_is_refused(global_cp: GlobalControlPlane,
                                                   zones: list[ZoneControlPlane],
                                                   tmp_path: Path) -> None:
    west_token, _ = await zone_token(global_cp, "west", tmp_path / "west.token")
    east = await zone(global_cp, zones, "east", tmp_path, token_file=west_token)
    await assert_refused(global_cp, east, "wrong-subject")
    assert "'west'" in east.sync.status.last_error
    with pytest.raises(NotFound):  # refused before the zone is recorded
        await ResourceManager(global_cp.store).get("Zone", "east")  # type: ignore[arg-type]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


async def _forged(global_cp: GlobalControlPlane, how: str) -> str:
    ring = await global_cp.zone_tokens.keys()
    if how == "unknown-key":  # a key of the forger's own, under its own id
        token, _ = issue(SigningKey.generate(time.time()), ZONE, "east", 3600,
                         scopes=["cp", "ingress"])
        return token
    if how == "copied-key-id":  # the forger's key, claiming to be the global's
        fake = SigningKey(kid=ring.signing.kid, private=SigningKey.generate(0).private,
                          created=0)
        token, _ = issue(fake, ZONE, "east", 3600, scopes=["cp", "ingress"])
        return token
    # tampered: a genuine token for west, its subject rewritten to east
    genuine, _ = await global_cp.zone_tokens.issue("west", 3600, ["cp", "ingress"])
    header, payload, signature = genuine.split(".")
    claims = json.loads(_unb64(payload))
    claims["sub"] = "east"
    return ".".join([header, _b64(json.dumps(claims).encode()), signature])


@pytest.mark.parametrize(("how", "reason"), [("unknown-key", "unknown-key"),
                                             ("copied-key-id", "bad-signature"),
                                             ("tampered", "bad-signature")])
async def test_a_forged_token_is_refused(global_cp: GlobalControlPlane,
                                         zones: list[ZoneControlPlane], tmp_path: Path,
                                         how: str, reason: str) -> None:
    token = await _forged(global_cp, how)
    east = await zone(global_cp, zones, "east", tmp_path,
                      token_file=token_file(tmp_path, "east.token", token))
    await assert_refused(global_cp, east, reason)


# -- a disabled zone ------------------------------------------------------------------

INGRESS = {"type": "ZoneIngress", "name": "ingress-1",
           "networking": {"address": "10.1.0.1", "advertisedAddress": "203.0.113.1",
                          "advertisedPort": 10001},
           "availableServices": [{"tags": {"gossamer.io/service": "backend"}}]}


async def _ingress_names(zone: ZoneControlPlane) -> set[str]:
    from gossamer.store.base import ListQuery

    assert zone.store is not None
    page = await zone.store.list(ListQuery("ZoneIngress"))
    return {r.name for r in page.items}


async def test_a_disabled_zone_is_cut_off_and_hidden_until_enabled_again(
        global_cp: GlobalControlPlane, zones: list[ZoneControlPlane], tmp_path: Path) -> None:
    east = await zone(global_cp, zones, "east", tmp_path)
    west = await zone(global_cp, zones, "west", tmp_path)
    await west.manager.apply(parse_document(INGRESS))
    await eventually(lambda: _has_ingress(east), what="west's ingress in east")
    await eventually(lambda: global_cp.insights.get("west").streams == 2)
    manager = ResourceManager(global_cp.store)  # type: ignore[arg-type]

    await manager.apply(parse_document({"type": "Zone", "name": "west", "enabled": False}))
    await eventually(lambda: not global_cp.insights.get("west").online, timeout=5,
                     what="west's streams ended")
    assert "was disabled at the global" in global_cp.insights.get("west").last_error
    await eventually(lambda: "disabled" in west.sync.status.last_error)
    await eventually(lambda: _rejections(global_cp, "disabled"), what="west refused again")
    await eventually(lambda: _no_ingress(east), what="west's ingress gone from east")
    assert global_cp.insights.get("east").online  # the other zone is untouched

    await manager.apply(parse_document({"type": "Zone", "name": "west", "enabled": True}))
    await eventually(lambda: global_cp.insights.get("west").streams == 2,
                     what="west admitted again")
    await eventually(lambda: _has_ingress(east), what="west's ingress back in east")


async def _has_ingress(zone: ZoneControlPlane) -> bool:
    return len(await _ingress_names(zone)) == 1


async def _no_ingress(zone: ZoneControlPlane) -> bool:
    return not await _ingress_names(zone)


# -- TLS ------------------------------------------------------------------------------


async def test_a_zone_without_a_ca_or_skip_verify_refuses_to_connect(
        global_cp: GlobalControlPlane, zones: list[ZoneControlPlane], tmp_path: Path) -> None:
    east = await zone(global_cp, zones, "east", tmp_path, global_ca=None)
    with pytest.raises(SyncConfigError, match="--global-ca"):
        await asyncio.wait_for(east.wait(), 5)
    assert "--insecure-skip-verify" in east.sync.status.last_error
    assert global_cp.insights.all() == []


async def test_a_zone_given_the_wrong_ca_fails_the_handshake(
        global_cp: GlobalControlPlane, zones: list[ZoneControlPlane], tmp_path: Path) -> None:
    other = ensure_serving_tls(tmp_path / "other-tls", "someone-else", [])
    east = await zone(global_cp, zones, "east", tmp_path, ca=other.ca_file)
    await eventually(lambda: f"does not verify with --global-ca {other.ca_file}"
                     in east.sync.status.last_error, what="a TLS verification error")
    assert not east.sync.status.connected
    assert global_cp.insights.all() == []  # no stream ever reached the global


async def test_a_zone_with_skip_verify_connects(global_cp: GlobalControlPlane,
                                                zones: list[ZoneControlPlane],
                                                tmp_path: Path) -> None:
    east = await zone(global_cp, zones, "east", tmp_path, global_ca=None,
                      insecure_skip_verify=True)
    await eventually(lambda: has_default_mesh(east), what="the zone in sync")
    assert global_cp.insights.get("east").online
