"""Registering sidecars at the zone CP: who may claim which Dataplane."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from gossamer.errors import NotFound
from gossamer.model.base import parse_document
from gossamer.resources import ResourceManager
from gossamer.store.memory import MemoryStore
from gossamer.token_authority import TokenAuthority
from gossamer.tokens import DATAPLANE
from zone_cp.agents import AgentRegistry, AgentSession, Refused

DP: dict[str, Any] = {
    "type": "Dataplane", "name": "backend-1", "mesh": "default",
    "networking": {"address": "10.0.0.7", "inbound": [
        {"port": 18080, "tags": {"gossamer.io/service": "backend"}}]}}


async def registry() -> tuple[AgentRegistry, ResourceManager]:
    manager = ResourceManager(MemoryStore())
    for mesh in ("default", "other"):
        await manager.apply(parse_document({"type": "Mesh", "name": mesh}))
    return AgentRegistry(manager, "west"), manager


async def token(manager: ResourceManager, service: str, mesh: str = "default") -> str:
    issued, _ = await TokenAuthority(manager, DATAPLANE, mesh).issue(service, 600)
    return issued


async def refusal(reg: AgentRegistry, doc: dict[str, Any], tok: str | None) -> grpc.StatusCode:
    with pytest.raises(Refused) as info:
        await reg.register(doc, tok, 0.0)
    return info.value.code


async def test_register_stores_the_dataplane_and_unregister_removes_it() -> None:
    reg, manager = await registry()
    session = await reg.register(DP, await token(manager, "backend"), 0.0)
    assert isinstance(session, AgentSession) and session.node_id == "default.backend-1"
    assert (await manager.get("Dataplane", "backend-1", "default")).name == "backend-1"
    await reg.unregister(session)
    with pytest.raises(NotFound):
        await manager.get("Dataplane", "backend-1", "default")


async def test_a_second_agent_with_another_identity_is_refused() -> None:
    reg, manager = await registry()
    first = await token(manager, "backend")
    await reg.register(DP, first, 0.0)
    assert await refusal(reg, DP, await token(manager, "backend")) == (
        grpc.StatusCode.ALREADY_EXISTS)
    # The same agent reconnecting (same token) takes its session over.
    again = await reg.register(DP, first, 1.0)
    assert reg.sessions["default.backend-1"] is again


async def test_tokens_for_another_service_or_mesh_or_none_are_refused() -> None:
    reg, manager = await registry()
    assert await refusal(reg, DP, await token(manager, "web")) == (
        grpc.StatusCode.PERMISSION_DENIED)
    assert await refusal(reg, DP, await token(manager, "backend", mesh="other")) == (
        grpc.StatusCode.UNAUTHENTICATED)
    assert await refusal(reg, DP, None) == grpc.StatusCode.UNAUTHENTICATED
    assert await refusal(reg, {**DP, "mesh": "nope"}, await token(manager, "backend")) == (
        grpc.StatusCode.NOT_FOUND)
    assert await refusal(reg, {**DP, "name": "Bad_Name"}, await token(manager, "backend")) == (
        grpc.StatusCode.INVALID_ARGUMENT)
