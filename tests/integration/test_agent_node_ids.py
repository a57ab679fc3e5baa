"""Node ids and inbound tags an agent cannot abuse, through the real agent API.

A sidecar's node id is ``dp:<mesh>:<name>``: mesh ``a`` with name ``b.c`` and mesh ``a.b``
with name ``c`` are two nodes (``<mesh>.<name>`` made them one, so a token of mesh ``a``
could squat the other mesh's name). An Envoy still using the old form is refused with
what to do. An inbound may not set the control plane's reserved tags (its zone).
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import httpx
import pytest
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from authority.token_authority import TokenAuthority
from gossamer.model.registry import parse_document
from gossamer.tokens import DATAPLANE
from tests.integration.test_agent_identity import (
    Agent,
    Zone,
    agents,
    dataplane,
    refused,
    registered,
    svc,
    zone,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")
__all__ = ["agents", "zone"]  # the fixtures, shared with test_agent_identity


async def token_of(zone: Zone, mesh: str, service: str) -> str:
    token, _ = await TokenAuthority(zone.cp.manager, DATAPLANE, mesh).issue(service, 600)
    return token


async def test_dotted_meshes_and_names_do_not_share_a_node(zone: Zone,
                                                           agents: list[Agent]) -> None:
    for mesh in ("a", "a.b"):
        await zone.cp.manager.apply(parse_document({"type": "Mesh", "name": mesh}))
    squatter = await registered(zone, agents, await token_of(zone, "a", "web"),
                                {**dataplane("b.c", svc("web")), "mesh": "a"})
    owner = await registered(zone, agents, await token_of(zone, "a.b", "web"),
                             {**dataplane("c", svc("web")), "mesh": "a.b"})
    assert squatter is not owner
    sessions = zone.cp.agents.sessions
    assert sessions["dp:a:b.c"].mesh == "a" and sessions["dp:a.b:c"].mesh == "a.b"
    async with httpx.AsyncClient(base_url=zone.cp.api_url, timeout=10, headers={
            "authorization": f"Bearer {zone.cp.admin_token}"}) as api:
        for mesh, name in (("a", "b.c"), ("a.b", "c")):
            response = await api.get(f"/meshes/{mesh}/dataplanes/{name}/_overview")
            assert response.status_code == 200, response.text
            assert response.json()["online"] is True


async def test_registered_names_the_new_node_id(zone: Zone, agents: list[Agent]) -> None:
    agent = Agent(zone, await zone.token("ids"))
    agents.append(agent)
    first = await agent.register(dataplane("ids-1", svc("ids")))
    assert first.registered.node_id == "dp:default:ids-1"


async def ads_refusal(zone: Zone, token: str, node_id: str) -> tuple[grpc.StatusCode, str]:
    async with zone.channel() as channel:
        call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).DeltaAggregatedResources(
            metadata=(("authorization", f"Bearer {token}"),))
        request = discovery_pb2.DeltaDiscoveryRequest()
        request.node.id = node_id
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call.write(request)
            await asyncio.wait_for(call.read(), 10)
    return info.value.code(), info.value.details() or ""


async def test_an_envoy_with_the_old_node_id_is_told_to_restart(zone: Zone,
                                                                agents: list[Agent]) -> None:
    token = await zone.token("old")
    await registered(zone, agents, token, dataplane("old-1", svc("old")))
    code, detail = await ads_refusal(zone, token, "default.old-1")
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert "old <mesh>.<name> form" in detail and "restart the sidecar" in detail


@pytest.mark.parametrize("tag", ["gossamer.io/zone", "gossamer.io/origin",
                                 "gossamer.io/anything"])
async def test_reserved_inbound_tags_are_refused(zone: Zone, tag: str) -> None:
    code, detail = await refused(zone, await zone.token("zoned"), dataplane(
        "zoned-1", svc("zoned", **{tag: "other"})))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and tag in detail and "inbound[0]" in detail


async def test_service_and_protocol_tags_are_the_agents(zone: Zone,
                                                        agents: list[Agent]) -> None:
    doc: dict[str, Any] = dataplane("proto-1", svc("proto", **{"gossamer.io/protocol": "http"}))
    await registered(zone, agents, await zone.token("proto"), doc)
