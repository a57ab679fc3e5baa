"""What one dataplane token can make the zone CP's ADS hold, tried through the real gRPC
agent API and ADS: one stream per node, streams that end with their agent's session,
insights that go with both, a superseded Session that ends, and bounds sized for one
honest sidecar.

A standalone zone CP runs in-process (memory store), as in ``test_agent_identity``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
import pytest_asyncio
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from authority.token_authority import TokenAuthority
from gossamer.settings import ZoneSettings
from gossamer.tokens import DATAPLANE
from proxy.envoy.resources import ENDPOINT_TYPE, LISTENER_TYPE
from sync.v1 import agent_pb2, agent_pb2_grpc
from tests.builders import dataplane_doc
from tests.waiting import eventually
from zone_cp.app import ZoneControlPlane
from zone_cp.xds import ADS_BOUNDS

pytestmark = pytest.mark.asyncio(loop_scope="module")

MESH = "default"
_ports = iter(range(31000, 40000))


@dataclass
class Zone:
    cp: ZoneControlPlane
    ca_pem: bytes

    async def token(self, service: str, **binding: Any) -> str:
        token, _ = await TokenAuthority(self.cp.manager, DATAPLANE, MESH).issue(
            service, 600, **binding)
        return token

    def channel(self) -> grpc.aio.Channel:
        assert self.cp.xds is not None
        return grpc.aio.secure_channel(f"127.0.0.1:{self.cp.xds.port}",
                                       grpc.ssl_channel_credentials(self.ca_pem))


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def zone(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Zone]:
    directory = tmp_path_factory.mktemp("ads-limits")
    cp = ZoneControlPlane(ZoneSettings(zone="lab", data_dir=directory, api_addr="127.0.0.1:0",
                                       xds_addr="127.0.0.1:0", store="memory"))
    await cp.start()
    try:
        await eventually(lambda: cp.ca.issuer(MESH), timeout=15, what="the zone's issuer")
        yield Zone(cp, (directory / "tls" / "ca.pem").read_bytes())
    finally:
        await cp.stop()


def auth(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


class Agent:
    """One agent's Session on its own channel; ``node_id`` once registered."""

    def __init__(self, zone: Zone, token: str) -> None:
        self.channel = zone.channel()
        self.call = agent_pb2_grpc.AgentStub(self.channel).Session(metadata=auth(token))
        self.node_id = ""

    async def register(self, name: str, service: str) -> Agent:
        doc = dataplane_doc(name, mesh=MESH, address="127.0.0.1", inbounds=[
            {"port": next(_ports), "servicePort": 1, "tags": {"gossamer.io/service": service}}])
        await self.call.write(agent_pb2.AgentMessage(register_dataplane_json=json.dumps(doc)))
        first = await asyncio.wait_for(self.call.read(), 10)
        assert first.WhichOneof("message") == "registered", first
        self.node_id = first.registered.node_id
        return self

    async def close(self) -> None:
        self.call.cancel()
        await self.channel.close()


class Ads:
    """One Envoy's delta ADS stream for ``node_id``, on its own channel."""

    def __init__(self, zone: Zone, token: str, node_id: str) -> None:
        self.channel = zone.channel()
        self.call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(
            self.channel).DeltaAggregatedResources(metadata=auth(token))
        self.node_id = node_id

    async def ask(self, type_url: str = LISTENER_TYPE, names: list[str] | None = None,
                  *, first: bool = True) -> None:
        request = discovery_pb2.DeltaDiscoveryRequest(
            type_url=type_url, resource_names_subscribe=names or [])
        if first:
            request.node.CopyFrom(base_pb2.Node(id=self.node_id))
        await self.call.write(request)

    async def listeners(self) -> discovery_pb2.DeltaDiscoveryResponse:
        """Read until the listeners arrive (the stream is admitted and served)."""
        while True:
            response = await asyncio.wait_for(self.call.read(), 10)
            assert response is not grpc.aio.EOF
            if response.type_url == LISTENER_TYPE:
                return response

    async def ended(self) -> tuple[grpc.StatusCode, str]:
        """How the server ended the stream (reading past what it sent)."""
        with pytest.raises(grpc.aio.AioRpcError) as info:
            while True:
                await asyncio.wait_for(self.call.read(), 10)
        return info.value.code(), info.value.details() or ""

    async def close(self) -> None:
        self.call.cancel()
        await self.channel.close()


async def serving(zone: Zone, token: str, node_id: str) -> Ads:
    ads = Ads(zone, token, node_id)
    await ads.ask()
    await ads.listeners()
    return ads


async def test_register_ads_disconnect_rounds_leave_no_insights(zone: Zone) -> None:
    token = await zone.token("cycler")  # no bound name: any name, one at a time
    nodes = []
    for i in range(12):
        agent = await Agent(zone, token).register(f"cycler-{i}", "cycler")
        ads = await serving(zone, token, agent.node_id)
        assert zone.cp.ads.insights[agent.node_id].generated is not None
        nodes.append(agent.node_id)
        await ads.close()
        await agent.close()
        await eventually(lambda: not zone.cp.agents.sessions, timeout=10,
                         what="the session to end")
    await eventually(lambda: not set(nodes) & zone.cp.ads.insights.keys(), timeout=10,
                     what="the departed nodes' insights to go")


async def test_a_live_node_keeps_its_insight_after_its_ads_stream_ends(zone: Zone) -> None:
    token = await zone.token("keeper")
    agent = await Agent(zone, token).register("keeper-1", "keeper")
    try:
        ads = await serving(zone, token, agent.node_id)
        await ads.close()
        await eventually(lambda: not zone.cp.ads.insights[agent.node_id].connected,
                         timeout=10, what="the stream to end")
        assert zone.cp.ads.insights[agent.node_id].generated is not None  # for inspect
    finally:
        await agent.close()
    await eventually(lambda: agent.node_id not in zone.cp.ads.insights, timeout=10,
                     what="the insight to go with the session")


async def test_a_second_ads_stream_of_a_node_ends_the_first(zone: Zone) -> None:
    token = await zone.token("twin")
    agent = await Agent(zone, token).register("twin-1", "twin")
    try:
        first = await serving(zone, token, agent.node_id)
        second = await serving(zone, token, agent.node_id)
        code, detail = await first.ended()
        assert code == grpc.StatusCode.ABORTED and "replaced by a newer ADS stream" in detail
        await asyncio.sleep(0.2)  # the older stream's end must not mark the node offline
        assert zone.cp.ads.insights[agent.node_id].connected  # the newer one is
        await first.close()
        await second.close()
    finally:
        await agent.close()


async def test_an_ads_stream_ends_with_its_agents_session(zone: Zone) -> None:
    token = await zone.token("leaver")
    agent = await Agent(zone, token).register("leaver-1", "leaver")
    ads = await serving(zone, token, agent.node_id)
    try:
        await agent.close()
        code, detail = await ads.ended()
        assert code == grpc.StatusCode.FAILED_PRECONDITION, (code, detail)
        assert "agent session" in detail and "ended" in detail
        # So the token's next name is its only stream: max_dataplanes bounds ADS too.
        other = await Agent(zone, token).register("leaver-2", "leaver")
        try:
            again = await serving(zone, token, other.node_id)
            await again.close()
        finally:
            await other.close()
    finally:
        await ads.close()


async def test_a_superseded_session_stream_is_ended(zone: Zone) -> None:
    token = await zone.token("again")
    older = await Agent(zone, token).register("again-1", "again")
    newer = await Agent(zone, token).register("again-1", "again")
    try:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            while True:
                await asyncio.wait_for(older.call.read(), 10)
        assert info.value.code() == grpc.StatusCode.ABORTED
        assert "replaced by a newer session" in (info.value.details() or "")
        assert zone.cp.agents.sessions[newer.node_id] is not None  # the newer one lives on
        await asyncio.sleep(0.2)
        assert newer.node_id in zone.cp.agents.sessions
    finally:
        await older.close()
        await newer.close()


async def test_an_honest_large_subscription_is_served(zone: Zone) -> None:
    """An Envoy of a 10,000-service mesh asks for 10,000 EDS names at once: served."""
    names = [f"outbound_payments-service-{i:05d}.default.svc__p8080" for i in range(10_000)]
    assert len(names) <= ADS_BOUNDS.max_names
    assert max(map(len, names)) <= ADS_BOUNDS.max_name_length
    token = await zone.token("big")
    agent = await Agent(zone, token).register("big-1", "big")
    try:
        ads = Ads(zone, token, agent.node_id)
        await ads.ask(ENDPOINT_TYPE, names)
        await ads.ask(LISTENER_TYPE, first=False)
        await ads.listeners()
        await ads.close()
    finally:
        await agent.close()


async def test_a_subscription_past_the_sidecar_bound_is_refused(zone: Zone) -> None:
    token = await zone.token("greedy")
    agent = await Agent(zone, token).register("greedy-1", "greedy")
    try:
        ads = Ads(zone, token, agent.node_id)
        await ads.ask(ENDPOINT_TYPE, [f"c{i}" for i in range(ADS_BOUNDS.max_names + 1)])
        code, detail = await ads.ended()
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, (code, detail)
        assert f"at most {ADS_BOUNDS.max_names}" in detail
        await ads.close()
    finally:
        await agent.close()


async def test_a_connected_sidecars_dataplane_is_held_once(zone: Zone) -> None:
    # A zone CP of thousands of sidecars keeps each registered Dataplane once: the
    # session holds the state's copy, not one of its own.
    token = await zone.token("single")
    agent = await Agent(zone, token).register("single-1", "single")
    try:
        ads = await serving(zone, token, agent.node_id)
        session = zone.cp.agents.sessions[agent.node_id]
        await eventually(lambda: zone.cp.state.get("Dataplane", "single-1", MESH)
                         is session.dataplane, timeout=10,
                         what="the session to hold the state's Dataplane")
        await ads.close()
    finally:
        await agent.close()
