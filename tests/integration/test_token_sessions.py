"""Live sessions end with their token (DESIGN §5, issue 10 point 3), through the real
gRPC agent API and ADS of in-process zone CPs: a sidecar's agent Session and its Envoy's
ADS stream end with UNAUTHENTICATED, and its stored Dataplane is removed, within seconds
of the dataplane token's expiry or revocation; the same for a zone ingress (agent
Session, ADS, the ZoneIngress at the zone and at the global) and its zone token.

The streams are opened by test clients speaking the agents' protocol (a Session that
registers a document, a delta ADS request with the node id and the token), so no Envoy
is needed to observe them end. Tokens that expire are issued valid for 2 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from authority.token_authority import TokenAuthority
from global_cp.app import GlobalControlPlane
from gossamer.errors import NotFound
from gossamer.settings import ZoneSettings
from gossamer.store.base import ListQuery
from gossamer.tokens import DATAPLANE
from sync.v1 import agent_pb2, agent_pb2_grpc
from tests.builders import dataplane_doc
from tests.cluster import start_global, start_zone
from tests.waiting import eventually
from zone_cp.app import ZoneControlPlane

MESH = "default"
LISTENERS = "type.googleapis.com/envoy.config.listener.v3.Listener"


def ingress(name: str) -> dict[str, Any]:
    return {"type": "ZoneIngress", "name": name,
            "networking": {"address": "127.0.0.1", "port": 20010}}


@dataclass
class Streams:
    """An agent's Session and its Envoy's ADS stream, opened with one token."""

    session: Any
    ads: Any

    async def ended(self) -> tuple[grpc.StatusCode, str, grpc.StatusCode, str]:
        """Both streams' final status and details (reading whatever is still sent)."""
        out: list[Any] = []
        for call in (self.session, self.ads):
            with contextlib.suppress(grpc.aio.AioRpcError):  # a status other than OK
                while await asyncio.wait_for(call.read(), 15) is not grpc.aio.EOF:
                    pass
            out += [await call.code(), await call.details()]
        return out[0], out[1], out[2], out[3]


@dataclass
class Peer:
    """A gRPC client of a zone CP's port 5678, with the zone's serving CA."""

    cp: ZoneControlPlane

    def channel(self) -> grpc.aio.Channel:
        assert self.cp.xds is not None
        ca = (self.cp.settings.directory / "tls" / "ca.pem").read_bytes()
        return grpc.aio.secure_channel(f"127.0.0.1:{self.cp.xds.port}",
                                       grpc.ssl_channel_credentials(ca))

    async def open(self, channel: grpc.aio.Channel, token: str, doc: dict[str, Any],
                   node_id: str) -> Streams:
        auth = (("authorization", f"Bearer {token}"),)
        session = agent_pb2_grpc.AgentStub(channel).Session(metadata=auth)
        await session.write(agent_pb2.AgentMessage(register_dataplane_json=json.dumps(doc)))
        first = await asyncio.wait_for(session.read(), 10)
        assert first.WhichOneof("message") == "registered", first
        ads = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).DeltaAggregatedResources(
            metadata=auth)
        await ads.write(discovery_pb2.DeltaDiscoveryRequest(
            node=base_pb2.Node(id=node_id), type_url=LISTENERS))
        response = await asyncio.wait_for(ads.read(), 10)
        assert isinstance(response, discovery_pb2.DeltaDiscoveryResponse), response
        return Streams(session, ads)


async def _gone(cp: ZoneControlPlane | GlobalControlPlane, kind: str, name: str,
                mesh: str = "") -> bool:
    assert cp.store is not None
    try:
        await cp.store.get(kind, name, mesh)
    except NotFound:
        return True
    return False


def _assert_withdrawn(status: tuple[grpc.StatusCode, str, grpc.StatusCode, str],
                      token_id: str, what: str) -> None:
    session_code, session_detail, ads_code, ads_detail = status
    assert session_code == ads_code == grpc.StatusCode.UNAUTHENTICATED, status
    for detail in (session_detail, ads_detail):
        assert f"token {token_id} {what}" in detail, status


# -- sidecars: a standalone zone and its own dataplane tokens ----------------------------


@pytest.fixture
async def zone(tmp_path: Path) -> AsyncIterator[ZoneControlPlane]:
    cp = ZoneControlPlane(ZoneSettings(zone="lab", data_dir=tmp_path / "zone",
                                       api_addr="127.0.0.1:0", xds_addr="127.0.0.1:0",
                                       store="sqlite"))
    await cp.start()
    try:
        yield cp
    finally:
        await cp.stop()


async def _sidecar(zone: ZoneControlPlane, channel: grpc.aio.Channel, name: str,
                   valid_for: float) -> tuple[Streams, str]:
    authority = TokenAuthority(zone.manager, DATAPLANE, MESH)
    token, claims = await authority.issue("backend", valid_for)
    doc = dataplane_doc(name, mesh=MESH, address="127.0.0.1", port=20001, service_port=20002)
    streams = await Peer(zone).open(channel, token, doc,
                                    f"dp:{MESH}:{name}")
    assert not await _gone(zone, "Dataplane", name, MESH)
    return streams, claims.token_id


async def test_an_expired_dataplane_token_ends_the_sidecars_session_ads_and_dataplane(
        zone: ZoneControlPlane) -> None:
    async with Peer(zone).channel() as channel:
        short, short_id = await _sidecar(zone, channel, "short-1", valid_for=2)
        # A sidecar with a long-lived token in the same zone is not touched.
        long, _ = await _sidecar(zone, channel, "long-1", valid_for=3600)
        status = await asyncio.wait_for(short.ended(), 15)
        _assert_withdrawn(status, short_id, "expired")
        await eventually(lambda: _gone(zone, "Dataplane", "short-1", MESH), timeout=5,
                         what="the expired sidecar's Dataplane to be removed")
        assert f"dp:{MESH}:short-1" not in zone.agents.sessions
        assert f"dp:{MESH}:long-1" in zone.agents.sessions
        assert not await _gone(zone, "Dataplane", "long-1", MESH)
        assert long.session.done() is False and long.ads.done() is False
        long.session.cancel()
        long.ads.cancel()


async def test_a_revoked_dataplane_token_ends_the_sidecars_session_ads_and_dataplane(
        zone: ZoneControlPlane) -> None:
    async with Peer(zone).channel() as channel:
        streams, token_id = await _sidecar(zone, channel, "backend-1", valid_for=3600)
        other, _ = await _sidecar(zone, channel, "backend-2", valid_for=3600)
        await TokenAuthority(zone.manager, DATAPLANE, MESH).revoke(token_id)
        status = await asyncio.wait_for(streams.ended(), 10)
        _assert_withdrawn(status, token_id, "was revoked")
        await eventually(lambda: _gone(zone, "Dataplane", "backend-1", MESH), timeout=5,
                         what="the revoked sidecar's Dataplane to be removed")
        assert other.session.done() is False and other.ads.done() is False
        assert not await _gone(zone, "Dataplane", "backend-2", MESH)
        other.session.cancel()
        other.ads.cancel()
    # Nothing is left holding the ended tokens.
    await eventually(lambda: len(zone.lifetimes) == 0, timeout=5,
                     what="every hold to be released")


# -- ingresses: a global and a federated zone; zone tokens ------------------------------


@dataclass
class Federation:
    global_cp: GlobalControlPlane
    zone: ZoneControlPlane


@pytest.fixture
async def federation(tmp_path: Path) -> AsyncIterator[Federation]:
    global_cp = await start_global(tmp_path / "global")
    try:
        zone = await start_zone(global_cp, "east", tmp_path / "east")
        try:
            await eventually(lambda: zone.manager.get("TokenTrust", "zone"), timeout=15,
                             what="the zone token keys at the zone")
            yield Federation(global_cp, zone)
        finally:
            await zone.stop()
    finally:
        await global_cp.stop()


async def _ingress(fed: Federation, channel: grpc.aio.Channel, name: str,
                   valid_for: float) -> tuple[Streams, str]:
    token, claims = await fed.global_cp.zone_tokens.issue("east", valid_for, ["ingress"])
    streams = await Peer(fed.zone).open(channel, token, ingress(name), f"ingress:{name}")
    await eventually(lambda: _present_at_global(fed, name), timeout=15,
                     what="the ZoneIngress to reach the global")
    return streams, claims.token_id


async def _present_at_global(fed: Federation, name: str) -> bool:
    assert fed.global_cp.store is not None
    items = (await fed.global_cp.store.list(ListQuery("ZoneIngress"))).items
    return any(r.labels.get("gossamer.io/display-name") == name for r in items)


async def _absent_at_global(fed: Federation, name: str) -> bool:
    return not await _present_at_global(fed, name)


async def test_an_expired_zone_token_ends_the_ingress_session_ads_and_zoneingress(
        federation: Federation) -> None:
    fed = federation
    async with Peer(fed.zone).channel() as channel:
        streams, token_id = await _ingress(fed, channel, "east-ingress", valid_for=2)
        status = await asyncio.wait_for(streams.ended(), 15)
    _assert_withdrawn(status, token_id, "expired")
    await eventually(lambda: _gone(fed.zone, "ZoneIngress", "east-ingress"), timeout=5,
                     what="the expired ingress's ZoneIngress to be removed at the zone")
    await eventually(lambda: _absent_at_global(fed, "east-ingress"), timeout=10,
                     what="the ingress to be withdrawn from the global")


async def test_a_revoked_zone_token_ends_the_ingress_session_ads_and_zoneingress(
        federation: Federation) -> None:
    fed = federation
    async with Peer(fed.zone).channel() as channel:
        streams, token_id = await _ingress(fed, channel, "east-ingress", valid_for=3600)
        await fed.global_cp.zone_tokens.revoke(token_id)
        status = await asyncio.wait_for(streams.ended(), 15)
    _assert_withdrawn(status, token_id, "was revoked")
    await eventually(lambda: _gone(fed.zone, "ZoneIngress", "east-ingress"), timeout=5,
                     what="the revoked ingress's ZoneIngress to be removed at the zone")
    await eventually(lambda: _absent_at_global(fed, "east-ingress"), timeout=10,
                     what="the ingress to be withdrawn from the global")
