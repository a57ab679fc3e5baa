"""Per-peer bounds through the real gRPC interfaces (issue 10 point 9): an authenticated
peer cannot grow a control plane's memory without bound.

* The zone sync over TLS, with a valid zone token: 10,000 unknown type URLs end the stream
  with INVALID_ARGUMENT at the first; a million names in one subscription with
  RESOURCE_EXHAUSTED naming the bound.
* A zone CP's ADS, with a registered sidecar's token: the same for an Envoy-like client.

The clients are plain gRPC stubs speaking delta xDS, so they can send what no real zone
or Envoy would.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from authority.token_authority import TokenAuthority
from global_cp.app import GlobalControlPlane
from gossamer.settings import ZoneSettings
from gossamer.tokens import DATAPLANE
from sync.bounds import Bounds
from sync.codec import kind_type_url
from sync.v1 import agent_pb2, agent_pb2_grpc, sync_pb2_grpc
from tests.cluster import start_global
from zone_cp.app import ZoneControlPlane
from zone_cp.xds import ADS_BOUNDS

MESH_URL = kind_type_url("Mesh")
LISTENERS = "type.googleapis.com/envoy.config.listener.v3.Listener"
MAX_NAMES = Bounds().max_names
Metadata = Sequence[tuple[str, str]]


def _refusal(target: str, ca: bytes, method: Callable[[grpc.Channel], Any],
             metadata: Metadata, requests: list[discovery_pb2.DeltaDiscoveryRequest]
             ) -> tuple[grpc.StatusCode, str]:
    channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(ca), options=[
        ("grpc.max_send_message_length", 64 * 1024 * 1024)])
    try:
        for _ in method(channel)(iter(requests), metadata=metadata, timeout=30):
            pass  # heartbeats, first responses
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""  # type: ignore[attr-defined]
    finally:
        channel.close()
    return grpc.StatusCode.OK, ""


async def refusal(target: str, ca: bytes, method: Callable[[grpc.Channel], Any],
                  metadata: Metadata, requests: list[discovery_pb2.DeltaDiscoveryRequest]
                  ) -> tuple[grpc.StatusCode, str]:
    """Send ``requests`` on a new stream (until the server ends it) and return the status
    the server ended it with.

    A blocking client in a thread: grpc.aio's client replaces a delivered status with
    INTERNAL "Internal error from Core" when a write fails after it (grpc/grpc#36066),
    which a flood of writes makes likely; the blocking client keeps the server's."""
    return await asyncio.to_thread(_refusal, target, ca, method, metadata, requests)


def names(count: int) -> list[str]:
    return [f"n{i:07d}" for i in range(count)]


# -- the zone sync --------------------------------------------------------------------------


@pytest.fixture
async def global_cp(tmp_path: Path) -> AsyncIterator[GlobalControlPlane]:
    cp = await start_global(tmp_path / "global")
    try:
        yield cp
    finally:
        await cp.stop()


async def zone_metadata(cp: GlobalControlPlane) -> Metadata:
    token, _ = await cp.zone_tokens.issue("east", 600, ["cp"])
    return (("authorization", f"Bearer {token}"), ("gossamer-zone", "east"))


async def to_global(cp: GlobalControlPlane, requests: list[discovery_pb2.DeltaDiscoveryRequest]
                    ) -> tuple[grpc.StatusCode, str]:
    assert cp.sync is not None
    return await refusal(f"127.0.0.1:{cp.sync.port}", cp.tls.ca_file.read_bytes(),
                         lambda channel: sync_pb2_grpc.ZoneSyncStub(channel).GlobalToZone,
                         await zone_metadata(cp), requests)


async def test_a_zone_sending_unknown_type_urls_is_refused(global_cp: GlobalControlPlane
                                                           ) -> None:
    flood = [discovery_pb2.DeltaDiscoveryRequest(type_url=f"evil.example/{i}")
             for i in range(10_000)]
    code, details = await to_global(global_cp, flood)
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details)
    assert "type URL 'evil.example/0' is not one this server publishes" in details


async def test_a_zone_subscribing_to_a_million_names_is_refused(global_cp: GlobalControlPlane
                                                                ) -> None:
    request = discovery_pb2.DeltaDiscoveryRequest(
        type_url=MESH_URL, resource_names_subscribe=names(1_000_000))
    code, details = await to_global(global_cp, [request])
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, (code, details)
    assert (f"1000000 names in resource_names_subscribe of one request; at most {MAX_NAMES}"
            in details)
    # The global still serves: a well-behaved zone stream gets its first response.
    assert global_cp.sync is not None
    async with grpc.aio.secure_channel(
            f"127.0.0.1:{global_cp.sync.port}",
            grpc.ssl_channel_credentials(global_cp.tls.ca_file.read_bytes())) as channel:
        call = sync_pb2_grpc.ZoneSyncStub(channel).GlobalToZone(
            metadata=await zone_metadata(global_cp))
        await call.write(discovery_pb2.DeltaDiscoveryRequest(type_url=MESH_URL))
        async with asyncio.timeout(10):
            while (first := await call.read()).type_url != MESH_URL:
                pass  # heartbeats
        assert first.resources
        call.cancel()


# -- a zone CP's ADS ------------------------------------------------------------------------


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


def node(request: discovery_pb2.DeltaDiscoveryRequest) -> discovery_pb2.DeltaDiscoveryRequest:
    request.node.CopyFrom(base_pb2.Node(id="dp:default:web-1"))
    return request


async def test_an_ads_client_past_the_bounds_is_refused(zone: ZoneControlPlane) -> None:
    assert zone.xds is not None
    token, _ = await TokenAuthority(zone.manager, DATAPLANE, "default").issue("web", 600)
    auth = (("authorization", f"Bearer {token}"),)
    ca = (zone.settings.directory / "tls" / "ca.pem").read_bytes()
    target = f"127.0.0.1:{zone.xds.port}"

    def ads(channel: grpc.Channel) -> Any:
        return ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).DeltaAggregatedResources

    async with grpc.aio.secure_channel(target, grpc.ssl_channel_credentials(ca)) as channel:
        session = agent_pb2_grpc.AgentStub(channel).Session(metadata=auth)
        doc = {"type": "Dataplane", "mesh": "default", "name": "web-1", "networking": {
            "address": "127.0.0.1", "inbound": [
                {"port": 20001, "servicePort": 20002, "tags": {"gossamer.io/service": "web"}}]}}
        await session.write(agent_pb2.AgentMessage(register_dataplane_json=json.dumps(doc)))
        assert (await asyncio.wait_for(session.read(), 10)).WhichOneof("message") == "registered"

        unknown = [node(discovery_pb2.DeltaDiscoveryRequest(type_url=f"evil.example/{i}"))
                   for i in range(10_000)]
        code, details = await refusal(target, ca, ads, auth, unknown)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details)
        assert "type URL 'evil.example/0' is not one this server publishes" in details

        # A subscription grown past the bound over two requests (each within gRPC's 4 MiB).
        half = ADS_BOUNDS.max_names // 2 + 1
        grown = [node(discovery_pb2.DeltaDiscoveryRequest(
                     type_url=LISTENERS, resource_names_subscribe=names(half))),
                 discovery_pb2.DeltaDiscoveryRequest(
                     type_url=LISTENERS,
                     resource_names_subscribe=[f"m{n}" for n in names(half)])]
        code, details = await refusal(target, ca, ads, auth, grown)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, (code, details)
        assert (f"more than {ADS_BOUNDS.max_names} resource names subscribed for "
                f"{LISTENERS}") in details

        # The sidecar's own stream still works.
        call = ads(channel)(metadata=auth)
        await call.write(node(discovery_pb2.DeltaDiscoveryRequest(type_url=LISTENERS)))
        response = await asyncio.wait_for(call.read(), 10)
        assert response.type_url == LISTENERS
        call.cancel()
        session.cancel()
