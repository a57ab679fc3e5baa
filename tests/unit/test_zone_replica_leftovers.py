"""Zone CP replicas on one store expire only the leftovers of their own sessions.

Two ``AgentRegistry``s (two replicas) share one store. A sidecar registered through
replica ``a`` carries ``a``'s name, so replica ``b`` — starting, or expiring what it found
— never counts it as its own leftover nor removes it; ``a`` does, once its agent is gone.
A Dataplane stored by a CP without replicas (no label) stays everybody's, as before.
"""

from __future__ import annotations

from authority.bootstrap import bootstrap
from authority.token_authority import TokenAuthority
from gossamer.model.labels import CP_REPLICA_LABEL
from gossamer.resources import ResourceManager
from gossamer.store.memory import MemoryStore
from gossamer.tokens import DATAPLANE
from tests.builders import dataplane_doc
from zone_cp.agents import AgentRegistry


async def test_a_replica_never_expires_a_sidecar_registered_through_another() -> None:
    manager = ResourceManager(MemoryStore())
    await bootstrap(manager)
    a = AgentRegistry(manager, "east", replica="a")
    b = AgentRegistry(manager, "east", replica="b")
    token, _ = await TokenAuthority(manager, DATAPLANE, "default").issue("backend", 3600)
    await a.register(dataplane_doc("web-1", "backend"), token, 0.0)
    stored = await manager.get("Dataplane", "web-1", "default")
    assert stored.labels[CP_REPLICA_LABEL] == "a"

    assert await b.leftovers() == []
    assert await b.expire([("default", "web-1")]) == []
    assert (await manager.get("Dataplane", "web-1", "default")).name == "web-1"

    a2 = AgentRegistry(manager, "east", replica="a")  # replica a restarted, agent gone
    assert await a2.leftovers() == [("default", "web-1")]
    assert await a2.expire([("default", "web-1")]) == [("default", "web-1")]


async def test_a_dataplane_stored_without_replicas_is_any_replicas_leftover() -> None:
    manager = ResourceManager(MemoryStore())
    await bootstrap(manager)
    single = AgentRegistry(manager, "east")
    token, _ = await TokenAuthority(manager, DATAPLANE, "default").issue("backend", 3600)
    await single.register(dataplane_doc("web-1", "backend"), token, 0.0)
    assert CP_REPLICA_LABEL not in (await manager.get("Dataplane", "web-1", "default")).labels
    assert await AgentRegistry(manager, "east", replica="b").leftovers() == [
        ("default", "web-1")]
