"""Whether Envoy has the trust bundle, without sockets: the ACK bookkeeping of both SDS
dialects (``SotwState``; the delta engine with ``DeltaWants``), the verdict
``trust_ack`` draws from it, the digest the agent reports, and ``SecretServer`` driven
through fake gRPC streams (the test plays Envoy) calling back its watchers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.rpc import status_pb2

from proxy.agent.sds_server import SecretServer
from proxy.agent.sds_state import (
    SECRET_TYPE,
    DeltaWants,
    SotwRequest,
    SotwState,
    StreamView,
    TrustAck,
    TrustPhase,
    digest_to_report,
    secret_entries,
    trust_ack,
)
from proxy.context import IDENTITY_SECRET, TRUST_SECRET
from sync.engine import Engine
from sync.messages import Nack, Request
from tests.waiting import eventually

CHAIN, KEY = b"chain", b"key"
OLD, NEW = secret_entries(CHAIN, KEY, b"bundle-old"), secret_entries(CHAIN, KEY, b"bundle-new")
V_OLD, V_NEW = OLD[TRUST_SECRET].version, NEW[TRUST_SECRET].version


def sotw(names: set[str], version: str = "", nonce: str = "",
         error: str | None = None) -> SotwRequest:
    return SotwRequest(frozenset(names), version, nonce, error, "default.backend-1")


# -- state of the world ---------------------------------------------------------------------

def test_sotw_counts_a_secret_as_held_only_once_acked() -> None:
    state = SotwState()
    assert state.view(TRUST_SECRET) is None  # not subscribed yet
    state.on_request(sotw({TRUST_SECRET}))
    first = state.pending(OLD)
    assert first is not None
    assert state.view(TRUST_SECRET) == StreamView(None)  # sent is not held
    state.on_request(sotw({TRUST_SECRET}, first.version, first.nonce))
    assert state.view(TRUST_SECRET) == StreamView(V_OLD)
    assert state.view(IDENTITY_SECRET) is None


def test_sotw_a_nack_keeps_the_acked_version_and_names_the_refused_one() -> None:
    state = SotwState()
    state.on_request(sotw({TRUST_SECRET}))
    first = state.pending(OLD)
    assert first is not None
    state.on_request(sotw({TRUST_SECRET}, first.version, first.nonce))
    second = state.pending(NEW)
    assert second is not None
    state.on_request(sotw({TRUST_SECRET}, first.version, second.nonce, "bad CA"))
    assert state.view(TRUST_SECRET) == StreamView(V_OLD, V_NEW, "bad CA")
    # a later version that Envoy takes clears the refusal
    third_entries = secret_entries(CHAIN, KEY, b"bundle-fixed")
    third = state.pending(third_entries)
    assert third is not None
    state.on_request(sotw({TRUST_SECRET}, third.version, third.nonce))
    assert state.view(TRUST_SECRET) == StreamView(third_entries[TRUST_SECRET].version)


def test_sotw_a_stale_ack_does_not_count() -> None:
    state = SotwState()
    state.on_request(sotw({TRUST_SECRET}))
    first = state.pending(OLD)
    second = state.pending(NEW)
    assert first is not None and second is not None
    state.on_request(sotw({TRUST_SECRET}, first.version, first.nonce))  # superseded
    assert state.view(TRUST_SECRET) == StreamView(None)
    state.on_request(sotw({TRUST_SECRET}, second.version, second.nonce))
    assert state.view(TRUST_SECRET) == StreamView(V_NEW)


# -- delta: the engine's acked and held versions, DeltaWants' subscription ------------------

def delta_view(engine: Engine, sid: str, wants: DeltaWants) -> StreamView | None:
    if not wants.wants(TRUST_SECRET):
        return None
    return StreamView(engine.acked(sid, SECRET_TYPE).get(TRUST_SECRET),
                      engine.held(sid, SECRET_TYPE).get(TRUST_SECRET), wants.last_error)


def delta_request(wants: DeltaWants, engine: Engine, request: Request) -> str:
    """Feed a request to both; the nonce of the one response due (there must be one)."""
    wants.on_request(request)
    [response] = engine.on_request("s", request, 0.0)
    return response.nonce


def test_delta_acks_and_nacks_of_the_trust_secret() -> None:
    engine, wants = Engine(), DeltaWants()
    engine.set_desired(SECRET_TYPE, OLD)
    engine.connect("s")
    assert delta_view(engine, "s", wants) is None
    nonce = delta_request(wants, engine, Request(SECRET_TYPE,
                                                 subscribe=frozenset({TRUST_SECRET})))
    assert delta_view(engine, "s", wants) == StreamView(None)
    wants.on_request(ack := Request(SECRET_TYPE, response_nonce=nonce))
    assert engine.on_request("s", ack, 0.0) == []
    assert delta_view(engine, "s", wants) == StreamView(V_OLD)

    engine.set_desired(SECRET_TYPE, NEW)
    [pushed] = engine.pending("s", 0.0)
    nack = Request(SECRET_TYPE, response_nonce=pushed.nonce, error=Nack("bad CA"))
    wants.on_request(nack)
    engine.on_request("s", nack, 0.0)
    assert delta_view(engine, "s", wants) == StreamView(V_OLD, V_NEW, "bad CA")


def test_delta_subscription_follows_subscribe_and_unsubscribe() -> None:
    wants = DeltaWants()
    wants.on_request(Request(SECRET_TYPE, subscribe=frozenset({IDENTITY_SECRET})))
    assert not wants.wants(TRUST_SECRET)
    wants.on_request(Request(SECRET_TYPE, subscribe=frozenset({TRUST_SECRET})))
    assert wants.wants(TRUST_SECRET)
    wants.on_request(Request(SECRET_TYPE, unsubscribe=frozenset({TRUST_SECRET})))
    assert not wants.wants(TRUST_SECRET)
    wildcard = DeltaWants()
    wildcard.on_request(Request(SECRET_TYPE))  # a first request naming nothing
    assert wildcard.wants(TRUST_SECRET)
    other = DeltaWants()
    other.on_request(Request("type.googleapis.com/other"))
    assert not other.started and not other.wants(TRUST_SECRET)


# -- the verdict and the digest reported ----------------------------------------------------

def test_trust_ack_needs_every_subscribed_stream() -> None:
    assert trust_ack(V_NEW, []).phase is TrustPhase.UNWATCHED
    assert trust_ack(V_NEW, [StreamView(V_NEW)]).phase is TrustPhase.APPLIED
    assert trust_ack(V_NEW, [StreamView(V_NEW), StreamView(V_OLD)]).phase is TrustPhase.PENDING
    assert trust_ack(V_NEW, [StreamView(None)]).phase is TrustPhase.PENDING
    refused = trust_ack(V_NEW, [StreamView(V_NEW), StreamView(V_OLD, V_NEW, "bad CA")])
    assert refused == TrustAck(TrustPhase.REFUSED, V_NEW, "bad CA")
    # an old refusal does not taint a newer version
    assert trust_ack(V_NEW, [StreamView(V_NEW, V_OLD)]).phase is TrustPhase.APPLIED


def test_a_refused_version_stays_refused_while_envoy_has_no_stream() -> None:
    refused = TrustAck(TrustPhase.REFUSED, V_NEW, "bad CA")
    assert trust_ack(V_NEW, [], refused) == refused
    assert trust_ack(V_OLD, [], refused).phase is TrustPhase.UNWATCHED
    assert trust_ack(V_NEW, [StreamView(V_NEW)], refused).phase is TrustPhase.APPLIED


def test_the_digest_reported_moves_only_when_envoy_has_the_bundle() -> None:
    def ack(phase: TrustPhase) -> TrustAck:
        return TrustAck(phase, V_NEW)

    assert digest_to_report(ack(TrustPhase.UNWATCHED), "new", "old") == "new"
    assert digest_to_report(ack(TrustPhase.APPLIED), "new", "old") == "new"
    assert digest_to_report(ack(TrustPhase.PENDING), "new", "old") == "old"
    assert digest_to_report(ack(TrustPhase.REFUSED), "new", "old") == "old"
    assert digest_to_report(ack(TrustPhase.PENDING), "new", None) == "new"


# -- SecretServer through fake streams ------------------------------------------------------

class FakeStream:
    """A gRPC server-side stream: the test plays Envoy's requests, reads the responses."""

    def __init__(self) -> None:
        self.requests: asyncio.Queue[Any] = asyncio.Queue()
        self.responses: asyncio.Queue[Any] = asyncio.Queue()

    async def read(self) -> Any:
        return await self.requests.get()

    async def write(self, message: Any) -> None:
        self.responses.put_nowait(message)

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise AssertionError(f"aborted: {code} {details}")

    async def response(self) -> Any:
        return await asyncio.wait_for(self.responses.get(), 5)


NODE = base_pb2.Node(id="default.backend-1")


def nack_detail(message: str) -> status_pb2.Status:
    return status_pb2.Status(code=3, message=message)


class SotwEnvoy:
    def __init__(self, stream: FakeStream) -> None:
        self.stream = stream

    async def subscribe(self) -> Any:
        self.stream.requests.put_nowait(discovery_pb2.DiscoveryRequest(
            node=NODE, type_url=SECRET_TYPE, resource_names=[TRUST_SECRET]))
        return await self.stream.response()

    async def answer(self, response: Any, error: str | None = None) -> None:
        msg = discovery_pb2.DiscoveryRequest(
            node=NODE, type_url=SECRET_TYPE, resource_names=[TRUST_SECRET],
            version_info="" if error else response.version_info,
            response_nonce=response.nonce)
        if error:
            msg.error_detail.CopyFrom(nack_detail(error))
        self.stream.requests.put_nowait(msg)


class DeltaEnvoy(SotwEnvoy):
    async def subscribe(self) -> Any:
        self.stream.requests.put_nowait(discovery_pb2.DeltaDiscoveryRequest(
            node=NODE, type_url=SECRET_TYPE, resource_names_subscribe=[TRUST_SECRET]))
        return await self.stream.response()

    async def answer(self, response: Any, error: str | None = None) -> None:
        msg = discovery_pb2.DeltaDiscoveryRequest(type_url=SECRET_TYPE,
                                                  response_nonce=response.nonce)
        if error:
            msg.error_detail.CopyFrom(nack_detail(error))
        self.stream.requests.put_nowait(msg)


@pytest.fixture
async def server() -> AsyncIterator[tuple[SecretServer, list[TrustAck]]]:
    sds = SecretServer()
    seen: list[TrustAck] = []
    sds.watch_trust(seen.append)
    yield sds, seen


@pytest.mark.parametrize("dialect", ["sotw", "delta"])
async def test_the_server_calls_back_on_ack_nack_and_stream_end(
        server: tuple[SecretServer, list[TrustAck]], dialect: str) -> None:
    sds, seen = server
    sds.update(OLD)
    assert sds.trust_ack() == TrustAck(TrustPhase.UNWATCHED, V_OLD)
    stream = FakeStream()
    envoy = SotwEnvoy(stream) if dialect == "sotw" else DeltaEnvoy(stream)
    handler = sds.StreamSecrets if dialect == "sotw" else sds.DeltaSecrets
    task = asyncio.create_task(handler(None, stream))
    try:
        first = await envoy.subscribe()
        assert sds.trust_ack().phase is TrustPhase.PENDING  # sent, not yet ACKed
        await envoy.answer(first)
        await eventually(lambda: sds.trust_ack().phase is TrustPhase.APPLIED, 5, "the ACK")
        assert seen[-1] == TrustAck(TrustPhase.APPLIED, V_OLD)

        sds.update(NEW)
        assert seen[-1] == TrustAck(TrustPhase.PENDING, V_NEW)
        pushed = await stream.response()
        await envoy.answer(pushed, error="Failed to load trusted CA certificates")
        await eventually(lambda: sds.trust_ack().phase is TrustPhase.REFUSED, 5, "the NACK")
        assert seen[-1] == TrustAck(TrustPhase.REFUSED, V_NEW,
                                    "Failed to load trusted CA certificates")
    finally:
        stream.requests.put_nowait(None)  # Envoy closes the stream
        await asyncio.wait_for(task, 5)
    # no stream left, but the refusal is remembered for this version
    assert sds.trust_ack().phase is TrustPhase.REFUSED
    assert sds.streams == 0
