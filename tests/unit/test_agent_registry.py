"""Registering sidecars at the zone CP: who may claim which Dataplane; what they report
about their certificates, and the trust bundle and renewals the registry sends them."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import grpc
import pytest

from authority.token_authority import TokenAuthority
from gossamer.errors import GossamerError, NotFound
from gossamer.model.registry import parse_document
from gossamer.pki.certs import (
    KeyPair,
    bundle_digest,
    bundle_pem,
    chain_root,
    new_leaf,
    new_root_ca,
)
from gossamer.resources import ResourceManager
from gossamer.store.memory import MemoryStore
from gossamer.tokens import DATAPLANE
from tests.builders import dataplane_doc
from tests.waiting import eventually
from zone_cp.agent_session import AgentSession, Change
from zone_cp.agent_wire import to_message
from zone_cp.agents import AgentRegistry
from zone_cp.cert_status import StatusReport, parse_status
from zone_cp.grpc_edge import status_code
from zone_cp.leftovers import leftover_keys
from zone_cp.updates import TrustBundle

DP: dict[str, Any] = dataplane_doc("backend-1", service_port=None)


async def registry() -> tuple[AgentRegistry, ResourceManager]:
    manager = ResourceManager(MemoryStore())
    for mesh in ("default", "other"):
        await manager.apply(parse_document({"type": "Mesh", "name": mesh}))
    return AgentRegistry(manager, "west"), manager


async def token(manager: ResourceManager, service: str, mesh: str = "default",
                max_dataplanes: int = 1) -> str:
    issued, _ = await TokenAuthority(manager, DATAPLANE, mesh).issue(
        service, 600, max_dataplanes=max_dataplanes)
    return issued


async def refusal(reg: AgentRegistry, doc: dict[str, Any], tok: str | None) -> grpc.StatusCode:
    with pytest.raises(GossamerError) as info:
        await reg.register(doc, tok, 0.0)
    return status_code(info.value)


async def test_register_stores_the_dataplane_and_unregister_removes_it() -> None:
    reg, manager = await registry()
    session = await reg.register(DP, await token(manager, "backend"), 0.0)
    assert isinstance(session, AgentSession) and session.node_id == "dp:default:backend-1"
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
    assert reg.sessions["dp:default:backend-1"] is again


async def test_tokens_for_another_service_or_mesh_or_none_are_refused() -> None:
    reg, manager = await registry()
    assert await refusal(reg, DP, await token(manager, "web")) == (
        grpc.StatusCode.PERMISSION_DENIED)
    # The token names its mesh: a document of another mesh is not what it vouches for.
    assert await refusal(reg, DP, await token(manager, "backend", mesh="other")) == (
        grpc.StatusCode.PERMISSION_DENIED)
    assert await refusal(reg, DP, None) == grpc.StatusCode.UNAUTHENTICATED
    assert await refusal(reg, {**DP, "mesh": "nope"}, await token(manager, "backend")) == (
        grpc.StatusCode.PERMISSION_DENIED)
    assert await refusal(reg, {**DP, "name": "Bad_Name"}, await token(manager, "backend")) == (
        grpc.StatusCode.INVALID_ARGUMENT)


# -- certificates: what sidecars report, and what the mesh CA's controller asks -------------

T0 = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
ROOT = new_root_ca("mesh root", T0 - dt.timedelta(days=1), dt.timedelta(days=365))
OTHER_ROOT = new_root_ca("next root", T0 - dt.timedelta(days=1), dt.timedelta(days=365))


def dataplane(name: str, mesh: str = "default") -> dict[str, Any]:
    """``DP`` under another name or mesh."""
    return dataplane_doc(name, mesh=mesh, service_port=None)


async def sidecar(reg: AgentRegistry, manager: ResourceManager, name: str,
                  mesh: str = "default") -> AgentSession:
    session = await reg.register(dataplane(name, mesh), await token(manager, "backend", mesh),
                                 0.0)
    assert isinstance(session, AgentSession)
    return session


def drain(session: AgentSession) -> list[str]:
    """The kinds of the messages queued for the sidecar, emptying the queue."""
    kinds = []
    while not session.updates.empty():
        kinds.append(str(to_message(session.updates.get_nowait()).WhichOneof("message")))
    return kinds


def report(root: KeyPair = ROOT, valid_for: dt.timedelta = dt.timedelta(hours=24),
           digest: str = "") -> StatusReport:
    pair = new_leaf(root, "backend-1", T0, valid_for, uris=["spiffe://default/backend"])
    return parse_status(pair.cert_pem() + root.cert_pem(), digest, T0)


async def test_set_trust_bundle_reaches_the_mesh_now_and_later_sessions_once() -> None:
    reg, manager = await registry()
    a, b = await sidecar(reg, manager, "a"), await sidecar(reg, manager, "b")
    elsewhere = await sidecar(reg, manager, "c", mesh="other")
    bundle = bundle_pem([ROOT.cert, OTHER_ROOT.cert])
    reg.trust.set_trust_bundle("default", bundle)
    assert drain(a) == drain(b) == ["trust_bundle"] and drain(elsewhere) == []
    held = reg.trust.trust_bundle("default")
    assert held is not None and held == (bundle, bundle_digest(bundle))

    # The same roots again, in another order: nothing is sent.
    reg.trust.set_trust_bundle("default", OTHER_ROOT.cert_pem() + ROOT.cert_pem())
    assert drain(a) == []

    # A session that registers later gets it straight away, once.
    c = await sidecar(reg, manager, "d")
    message = c.updates.get_nowait()
    assert message == TrustBundle(pem=bundle) and c.updates.empty()

    with pytest.raises(ValueError):
        reg.trust.set_trust_bundle("default", b"not a bundle")


async def test_renew_asks_the_sessions_the_predicate_selects() -> None:
    reg, manager = await registry()
    old, new = await sidecar(reg, manager, "old"), await sidecar(reg, manager, "new")
    elsewhere = await sidecar(reg, manager, "x", mesh="other")
    reg.reported(old, report(ROOT))
    reg.reported(new, report(OTHER_ROOT))

    def on_old_root(s: AgentSession) -> bool:
        return chain_root(s.certificate_chain, [ROOT.cert, OTHER_ROOT.cert]) == ROOT.cert

    assert reg.trust.renew("default", on_old_root) == 1
    assert drain(old) == ["renew"] and drain(new) == [] and drain(elsewhere) == []
    assert reg.trust.renew("default") == 2 and old.renewals_asked == 2


async def test_sessions_of_a_mesh_and_their_reports() -> None:
    reg, manager = await registry()
    b, a = await sidecar(reg, manager, "b"), await sidecar(reg, manager, "a")
    await sidecar(reg, manager, "z", mesh="other")
    assert [s.name for s in reg.sessions_of("default")] == ["a", "b"]
    assert a.certificate_chain == () and a.trust_bundle_digest == "" and a.certificate is None
    digest = bundle_digest(ROOT.cert_pem())
    reg.reported(b, report(digest=digest))
    assert b.trust_bundle_digest == digest and len(b.certificate_chain) == 2


async def test_listeners_hear_registrations_reports_and_departures() -> None:
    reg, manager = await registry()
    heard: list[tuple[Change, str]] = []
    reg.on_change(lambda change, s: heard.append((change, s.name)))
    session = await sidecar(reg, manager, "a")
    assert reg.trust.changed.is_set()
    reg.trust.changed.clear()
    reg.reported(session, report())
    assert reg.trust.changed.is_set()
    await reg.unregister(session)
    assert heard == [(Change.REGISTERED, "a"), (Change.REPORTED, "a"), (Change.GONE, "a")]


async def test_a_replaced_session_is_not_reported_or_gone() -> None:
    reg, manager = await registry()
    tok = await token(manager, "backend")
    first = await reg.register(DP, tok, 0.0)
    second = await reg.register(DP, tok, 1.0)
    assert isinstance(first, AgentSession) and isinstance(second, AgentSession)
    heard: list[Change] = []
    reg.on_change(lambda change, _s: heard.append(change))
    reg.reported(first, report())
    await reg.unregister(first)
    assert heard == [] and reg.sessions["dp:default:backend-1"] is second


# -- the control plane's own stop and restart ------------------------------------------------

async def stored_names(manager: ResourceManager) -> list[str]:
    return sorted(r.name for r in (await manager.list("Dataplane")).items)


async def test_sessions_ended_by_the_cp_stopping_keep_their_dataplanes() -> None:
    reg, manager = await registry()
    a, b = await sidecar(reg, manager, "a"), await sidecar(reg, manager, "b")
    await reg.unregister(a)  # an agent going away while the CP runs: removed at once
    assert await stored_names(manager) == ["b"]
    reg.stopping()
    await reg.unregister(b)
    assert await stored_names(manager) == ["b"] and reg.sessions == {}
    assert await reg.expire([("default", "b")]) == []  # nothing expires during a stop


async def test_a_restarted_registry_expires_only_leftovers_whose_agent_did_not_return(
        ) -> None:
    old, manager = await registry()
    tok = await token(manager, "backend", max_dataplanes=2)
    for name in ("back", "gone"):
        await old.register(dataplane(name), tok, 0.0)
    stored = await manager.get("Dataplane", "back", "default")
    assert stored.labels == {"gossamer.io/registered-by": "agent"}
    old.stopping()
    for session in list(old.sessions.values()):
        await old.unregister(session)
    # Not the registry's: applied by hand, or synced from another zone.
    await manager.apply(parse_document(dataplane("by-hand")))
    await manager.apply(parse_document({**dataplane("synced"), "labels": {
        "gossamer.io/registered-by": "agent", "gossamer.io/origin": "zone"}}))

    new = AgentRegistry(manager, "west")
    leftovers = await new.leftovers()
    assert leftovers == [("default", "back"), ("default", "gone")]
    # A stale Dataplane blocks no one: an agent with another token may take the name.
    await new.register(dataplane("back"), await token(manager, "backend"), 1.0)
    assert await new.expire(leftovers) == [("default", "gone")]
    assert await stored_names(manager) == ["back", "by-hand", "synced"]


async def test_run_waits_the_grace_then_expires() -> None:
    old, manager = await registry()
    await sidecar(old, manager, "gone")
    old.stopping()
    await old.unregister(old.sessions["dp:default:gone"])
    new = AgentRegistry(manager, "west")
    task = asyncio.create_task(new.run(grace=0.3))
    try:
        await asyncio.sleep(0.1)  # inside the grace: still there
        assert await stored_names(manager) == ["gone"]
        await eventually(lambda: _none_stored(manager), timeout=5,
                         what="the leftover expired after the grace")
        assert not task.done()  # a part of the CP: it runs until cancelled
    finally:
        task.cancel()


async def _none_stored(manager: ResourceManager) -> bool:
    return await stored_names(manager) == []


def test_leftover_keys_are_local_owned_and_without_a_session() -> None:
    def dp(name: str, **labels: str) -> Any:
        return parse_document({**dataplane(name), "labels": labels})

    stored = [dp("live", mine="1"), dp("left", mine="1"), dp("other"),
              dp("synced", mine="1", **{"gossamer.io/origin": "zone"})]
    assert leftover_keys(stored, {"dp:default:live"}, lambda r: f"dp:{r.mesh}:{r.name}",
                         lambda r: "mine" in r.labels) == [("default", "left")]
