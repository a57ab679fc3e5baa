"""The zone ingress at its zone CP without sockets: the services it offers, how its tokens
are judged, and its registration (memory store, ``MeshState`` and ``IngressRegistry`` as
the zone CP wires them): what is stored, what the agent may not set, admission to ADS, names
held by their token, standalone zones refusing, and a CP that stops or restarts.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from authority.token_authority import TokenAuthority
from gossamer.errors import GossamerError, NotFound
from gossamer.model.base import Resource
from gossamer.model.registry import parse_document
from gossamer.model.zoneingress import ZoneIngressSpec
from gossamer.resources import ResourceManager
from gossamer.store.memory import MemoryStore
from gossamer.tokens import DATAPLANE, ZONE, TokenRejected
from tests.builders import dataplane
from tests.unit.ingress_scenarios import KEY, PROTO, SERVICES, SVC
from tests.waiting import eventually
from zone_cp.grpc_edge import status_code
from zone_cp.ingresses import IngressRegistry, IngressSession, available_services, refusal
from zone_cp.mesh_state import MeshState


def test_available_services_count_routable_local_instances() -> None:
    offered = [(a.mesh, dict(a.tags), a.instances) for a in available_services(SERVICES)]
    assert offered == [
        ("default", {SVC: "backend", PROTO: "http"}, 2),
        ("default", {SVC: "grpc-api", PROTO: "grpc"}, 1),
        ("payments", {SVC: "ledger", PROTO: "tcp"}, 1),
    ]


def test_refusals_say_what_is_wrong_and_what_to_do() -> None:
    import jwt

    dataplane = jwt.encode({"kind": "dataplane", "sub": "backend"}, KEY, algorithm="HS256")
    wrong_key = refusal(TokenRejected("unknown-key", "signed by unknown key 'x'"), dataplane,
                        "east")
    assert status_code(wrong_key) is grpc.StatusCode.PERMISSION_DENIED
    assert "not a dataplane token" in wrong_key.detail
    assert "gossamer token zone --zone east --scope ingress" in wrong_key.detail
    scope = refusal(TokenRejected("wrong-scope", "token lacks the 'ingress' scope"), "t", "east")
    assert status_code(scope) is grpc.StatusCode.PERMISSION_DENIED
    assert "lacks the 'ingress' scope" in scope.detail
    expired = refusal(TokenRejected("expired", "token 1 expired"), "t", "east")
    assert status_code(expired) is grpc.StatusCode.UNAUTHENTICATED and "expired" in expired.detail


@dataclass
class Zone:
    manager: ResourceManager
    state: MeshState
    registry: IngressRegistry
    zone_tokens: TokenAuthority

    async def token(self, zone: str = "west", scopes: tuple[str, ...] = ("ingress",)) -> str:
        token, _ = await self.zone_tokens.issue(zone, 3600, scopes)
        return token

    async def register(self, token: str, name: str = "west-ingress",
                       **networking: Any) -> IngressSession:
        doc = {"type": "ZoneIngress", "name": name,
               "networking": {"address": "10.0.0.9", "port": 10001, **networking}}
        return await self.registry.register(parse_document(doc), token, 0.0)

    async def stored(self, name: str = "west-ingress") -> Resource | None:
        try:
            return await self.manager.get("ZoneIngress", name)
        except NotFound:
            return None


@pytest.fixture
async def zone() -> AsyncIterator[Zone]:
    manager = ResourceManager(MemoryStore())
    await manager.apply(parse_document({"type": "Mesh", "name": "default"}))
    # In one store: the signing side publishes the TokenTrust the zone verifies with.
    tokens = TokenAuthority(manager, ZONE, publish_trust=True)
    await tokens.keys()
    state = MeshState(manager.store, "west")
    registry = IngressRegistry(manager, state, "west", federated=True)
    tasks = [asyncio.create_task(state.run()), asyncio.create_task(registry.run())]
    yield Zone(manager, state, registry, tokens)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def offered(res: Resource | None) -> list[tuple[str, int]]:
    assert res is not None and isinstance(res.spec, ZoneIngressSpec)
    return [(a.tags[SVC], a.instances) for a in res.spec.available_services]


async def test_a_registered_ingress_is_stored_and_follows_the_services(zone: Zone) -> None:
    await zone.manager.apply(dataplane("backend-1", "backend", address="10.0.0.1",
                                       tags={PROTO: "http"}))
    session = await zone.register(await zone.token())
    assert session.node_id == "ingress:west-ingress" and session.mesh == ""
    stored = await zone.stored()
    assert stored is not None and stored.labels == {}
    assert isinstance(stored.spec, ZoneIngressSpec) and stored.spec.zone == "west"
    await eventually(lambda: _offers(zone, [("backend", 1)]))

    await zone.manager.apply(dataplane("backend-2", "backend", address="10.0.0.2",
                                       tags={PROTO: "http"}))
    await zone.manager.apply(dataplane("web-1", "web", address="10.0.0.3",
                                       tags={PROTO: "http"}))
    await eventually(lambda: _offers(zone, [("backend", 2), ("web", 1)]))
    await zone.manager.delete("Dataplane", "backend-1", "default")
    await eventually(lambda: _offers(zone, [("backend", 1), ("web", 1)]))

    ctx = zone.registry.context(session.node_id)
    assert ctx is not None and ctx.address == "10.0.0.9" and ctx.zone == "west"
    resources = zone.registry.generate(session.node_id)
    assert resources is not None and set(resources.clusters) == {"backend.default.mesh",
                                                                 "web.default.mesh"}
    await zone.registry.unregister(session)
    assert await zone.stored() is None
    assert zone.registry.generate(session.node_id) is None


async def _offers(zone: Zone, expected: list[tuple[str, int]]) -> bool:
    return offered(await zone.stored()) == expected


async def test_the_agent_cannot_set_zone_or_services(zone: Zone) -> None:
    foreign = {"type": "ZoneIngress", "name": "west-ingress", "zone": "east",
               "networking": {"address": "10.0.0.9"}}
    with pytest.raises(GossamerError, match="names zone 'east'"):
        await zone.registry.register(parse_document(foreign), await zone.token(), 0.0)
    doc = {"type": "ZoneIngress", "name": "west-ingress",
           "labels": {"gossamer.io/origin": "zone", "team": "edge"},
           "networking": {"address": "10.0.0.9"},
           "availableServices": [{"tags": {SVC: "made-up"}, "instances": 50}]}
    await zone.registry.register(parse_document(doc), await zone.token(), 0.0)
    stored = await zone.stored()
    assert stored is not None and stored.labels == {"team": "edge"}
    assert offered(stored) == []


async def test_tokens_are_checked(zone: Zone) -> None:
    with pytest.raises(GossamerError, match="lacks the 'ingress' scope") as scope:
        await zone.register(await zone.token(scopes=("cp",)))
    assert status_code(scope.value) is grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(GossamerError, match="not for this zone"):
        await zone.register(await zone.token("east"))
    dp_token, _ = await TokenAuthority(zone.manager, DATAPLANE, "default").issue("web", 60)
    with pytest.raises(GossamerError, match="not a dataplane token"):
        await zone.register(dp_token)
    with pytest.raises(GossamerError, match="token rejected"):
        await zone.register("not-a-token")
    assert await zone.stored() is None


async def test_admission_to_ads_needs_the_registering_token(zone: Zone) -> None:
    token = await zone.token()
    session = await zone.register(token)
    assert await zone.registry.admit(session.node_id, token) is session
    with pytest.raises(GossamerError, match="not the one the ingress registered with") as other:
        await zone.registry.admit(session.node_id, await zone.token())
    assert status_code(other.value) is grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(GossamerError, match="not registered"):
        await zone.registry.admit("ingress:nobody", token)


async def test_a_name_is_held_by_its_token_and_never_taken_from_another_zone(
        zone: Zone) -> None:
    first = await zone.token()
    held = await zone.register(first)
    with pytest.raises(GossamerError, match="already connected with another token") as taken:
        await zone.register(await zone.token())
    assert status_code(taken.value) is grpc.StatusCode.ALREADY_EXISTS
    again = await zone.register(first)  # the same agent reconnecting takes over
    await zone.registry.unregister(held)  # the old session's end leaves the new one alone
    assert await zone.stored() is not None
    await zone.registry.unregister(again)

    synced = parse_document({"type": "ZoneIngress", "name": "east-ingress-1a2b",
                             "labels": {"gossamer.io/zone": "east",
                                        "gossamer.io/origin": "zone"},
                             "networking": {"address": "192.168.1.1"}})
    await zone.manager.apply(synced)
    with pytest.raises(GossamerError, match="another zone's ingress"):
        await zone.register(await zone.token(), name="east-ingress-1a2b")


async def test_a_standalone_zone_or_one_not_yet_in_sync_refuses(zone: Zone) -> None:
    standalone = IngressRegistry(zone.manager, zone.state, "west", federated=False)
    with pytest.raises(GossamerError, match="standalone") as refused:
        await standalone.register(parse_document({
            "type": "ZoneIngress", "name": "i", "networking": {"address": "10.0.0.9"}}),
            await zone.token(), 0.0)
    assert status_code(refused.value) is grpc.StatusCode.PERMISSION_DENIED
    token = await zone.token()
    await zone.manager.delete("TokenTrust", ZONE)
    with pytest.raises(GossamerError, match="not received the zone token keys") as early:
        await zone.register(token)
    assert status_code(early.value) is grpc.StatusCode.UNAVAILABLE  # the agent retries


async def test_the_cp_stopping_keeps_the_ingress_and_a_restart_expires_it_if_not_back(
        zone: Zone) -> None:
    token = await zone.token()
    session = await zone.register(token)
    zone.registry.stopping()
    await zone.registry.unregister(session)
    assert await zone.stored() is not None and zone.registry.sessions == {}

    # The next run: the leftover (and not another zone's synced ingress) waits for its agent.
    await zone.manager.apply(parse_document({
        "type": "ZoneIngress", "name": "east-ingress-1a2b", "networking": {
            "address": "192.168.1.1"},
        "labels": {"gossamer.io/zone": "east", "gossamer.io/origin": "zone"}}))
    again = IngressRegistry(zone.manager, zone.state, "west", federated=True)
    leftovers = await again.leftovers()
    assert leftovers == [("", "west-ingress")]
    back = await again.register(parse_document({
        "type": "ZoneIngress", "name": "west-ingress",
        "networking": {"address": "10.0.0.9"}}), await zone.token(), 1.0)  # any token
    assert await again.expire(leftovers) == [] and await zone.stored() is not None
    await again.unregister(back)  # gone while the CP runs: removed at once
    assert await zone.stored() is None

    # An ingress that does not come back is removed when its grace ends.
    await zone.register(token, name="lost")
    zone.registry.stopping()
    await zone.registry.unregister(zone.registry.sessions["ingress:lost"])
    third = IngressRegistry(zone.manager, zone.state, "west", federated=True)
    assert await third.expire(await third.leftovers()) == [("", "lost")]
    assert await zone.stored("lost") is None
    assert await zone.stored("east-ingress-1a2b") is not None

