"""A registration whose store write fails leaves no session behind.

The store is a real in-memory store that refuses writes of chosen kinds, as a full disk
or a lost database would. A sidecar or ingress whose resource could not be stored is not
registered: its name stays free for the next agent, it is no sidecar a CA rotation waits
for, and the ingress registry's upkeep does not store it later.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from authority.token_authority import TokenAuthority
from gossamer.errors import NotFound, StoreUnavailable
from gossamer.model.base import Resource
from gossamer.model.registry import parse_document
from gossamer.model.zoneingress import ZoneIngressSpec
from gossamer.resources import ResourceManager
from gossamer.store.base import WriteOp, op_key
from gossamer.store.memory import MemoryStore
from gossamer.tokens import DATAPLANE, ZONE
from tests.waiting import eventually
from zone_cp.agent_session import AgentSession
from zone_cp.agents import AgentRegistry
from zone_cp.ingresses import IngressRegistry
from zone_cp.mesh_state import MeshState

DP: dict[str, Any] = {
    "type": "Dataplane", "name": "backend-1", "mesh": "default",
    "networking": {"address": "10.0.0.7", "inbound": [
        {"port": 18080, "tags": {"gossamer.io/service": "backend"}}]}}


class FailingStore(MemoryStore):
    """A memory store whose writes of ``failing`` kinds fail as an unreachable store's do."""

    def __init__(self) -> None:
        super().__init__()
        self.failing: set[str] = set()

    async def write(self, ops: Sequence[WriteOp]) -> list[Resource | None]:
        if any(op_key(op)[0] in self.failing for op in ops):
            raise StoreUnavailable("the store is unavailable: disk full")
        return await super().write(ops)


async def dataplane_token(manager: ResourceManager) -> str:
    issued, _ = await TokenAuthority(manager, DATAPLANE, "default").issue("backend", 600)
    return issued


@pytest.fixture
async def agents() -> tuple[AgentRegistry, FailingStore]:
    store = FailingStore()
    manager = ResourceManager(store)
    await manager.apply(parse_document({"type": "Mesh", "name": "default"}))
    return AgentRegistry(manager, "west"), store


async def test_a_failed_dataplane_write_leaves_no_session(
        agents: tuple[AgentRegistry, FailingStore]) -> None:
    reg, store = agents
    store.failing.add("Dataplane")
    with pytest.raises(StoreUnavailable):
        await reg.register(DP, await dataplane_token(reg.manager), 0.0)
    assert reg.sessions == {}
    assert reg.sessions_of("default") == []  # nothing for a CA rotation to wait for
    with pytest.raises(NotFound):
        await reg.manager.get("Dataplane", "backend-1", "default")
    # The name is free: another agent (another token) registers it.
    store.failing.clear()
    session = await reg.register(DP, await dataplane_token(reg.manager), 1.0)
    assert isinstance(session, AgentSession)
    assert reg.sessions == {"dp:default:backend-1": session}


async def test_a_failed_takeover_keeps_the_session_it_would_replace(
        agents: tuple[AgentRegistry, FailingStore]) -> None:
    reg, store = agents
    token = await dataplane_token(reg.manager)
    first = await reg.register(DP, token, 0.0)
    stored = await reg.manager.get("Dataplane", "backend-1", "default")
    store.failing.add("Dataplane")
    moved = {**DP, "networking": {**DP["networking"], "address": "10.0.0.8"}}
    with pytest.raises(StoreUnavailable):
        await reg.register(moved, token, 1.0)  # the same agent, reconnecting
    assert reg.sessions == {"dp:default:backend-1": first}
    assert await reg.manager.get("Dataplane", "backend-1", "default") == stored


@pytest.fixture
async def ingresses() -> AsyncIterator[tuple[IngressRegistry, FailingStore, TokenAuthority]]:
    store = FailingStore()
    manager = ResourceManager(store)
    await manager.apply(parse_document({"type": "Mesh", "name": "default"}))
    tokens = TokenAuthority(manager, ZONE, publish_trust=True)
    await tokens.keys()
    state = MeshState(store, "west")
    registry = IngressRegistry(manager, state, "west", federated=True)
    tasks = [asyncio.create_task(state.run()), asyncio.create_task(registry.run())]
    yield registry, store, tokens
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def ingress(name: str) -> Resource:
    return parse_document({"type": "ZoneIngress", "name": name,
                           "networking": {"address": "10.0.0.9", "port": 10001}})


async def test_a_failed_ingress_write_leaves_no_session_to_store_later(
        ingresses: tuple[IngressRegistry, FailingStore, TokenAuthority]) -> None:
    registry, store, tokens = ingresses
    token, _ = await tokens.issue("west", 3600, ("ingress",))
    store.failing.add("ZoneIngress")
    with pytest.raises(StoreUnavailable):
        await registry.register(ingress("west-ingress"), token, 0.0)
    assert registry.sessions == {}
    assert registry.generate("ingress:west-ingress") is None
    store.failing.clear()
    # The upkeep runs on the next state change; a second ingress shows when it has.
    await registry.register(ingress("second"), token, 1.0)
    await registry.manager.apply(parse_document({
        "type": "Dataplane", "name": "web-1", "mesh": "default",
        "networking": {"address": "10.0.0.1", "inbound": [
            {"port": 8080, "tags": {"gossamer.io/service": "web"}}]}}))

    async def second_offers_web() -> bool:
        spec = (await registry.manager.get("ZoneIngress", "second")).spec
        assert isinstance(spec, ZoneIngressSpec)
        return [a.tags["gossamer.io/service"] for a in spec.available_services] == ["web"]

    await eventually(second_offers_web)
    with pytest.raises(NotFound):
        await registry.manager.get("ZoneIngress", "west-ingress")
