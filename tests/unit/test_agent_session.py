"""The agent's Session as a conversation, without sockets: a fake stream stands in for
the gRPC call, the test plays the control plane's messages and reads what the agent
wrote. Covers the status reports (after each registration, on each change, only the
latest) and ``Renew``."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import grpc

from proxy.agent.cp_client import StatusReport, translate
from proxy.agent.errors import AgentError
from proxy.agent.grpc_wire import EOF, RpcError
from proxy.agent.session import Session, SessionPolicy
from sync.v1 import agent_pb2
from tests.waiting import eventually

REGISTERED = agent_pb2.ControlPlaneMessage(registered=agent_pb2.Registered(
    mesh="default", name="backend-1", zone="lab", node_id="default.backend-1"))
FIRST = StatusReport(b"-----BEGIN CERTIFICATE-----\nfirst\n", "a" * 64)
SECOND = StatusReport(b"-----BEGIN CERTIFICATE-----\nsecond\n", "b" * 64)


class FakeCall:
    """One Session stream: what the agent wrote, and what the CP says next."""

    def __init__(self) -> None:
        self.written: list[agent_pb2.AgentMessage] = []
        self.inbox: asyncio.Queue[Any] = asyncio.Queue()
        self.cancelled = False
        self.finished = False  # as grpc_wire.BidiCall once the stream ended

    async def write(self, message: agent_pb2.AgentMessage) -> None:
        if self.finished:
            raise RpcError("UNAVAILABLE", "the stream broke: Connection lost")
        self.written.append(message)

    async def read(self) -> Any:
        message = await self.inbox.get()
        if isinstance(message, Exception):
            raise message
        return message

    def cancel(self) -> None:
        self.cancelled = True

    def statuses(self) -> list[StatusReport]:
        return [StatusReport(m.status.certificate_chain_pem, m.status.trust_bundle_digest)
                for m in self.written if m.WhichOneof("message") == "status"]

    def kinds(self) -> list[str]:
        return [str(m.WhichOneof("message")) for m in self.written
                if m.WhichOneof("message") != "heartbeat"]


class FakeClient:
    cp = "https://zone.test:5678"

    def __init__(self) -> None:
        self.calls: list[FakeCall] = []
        self.token = "token-1"
        self.tokens: list[str] = []  # the token each stream was opened with

    def session(self) -> FakeCall:
        self.calls.append(FakeCall())
        self.tokens.append(self.token)
        return self.calls[-1]

    def translate(self, exc: RpcError, what: str) -> AgentError:
        return translate(exc, what)  # the real client's, without an address to name

    async def fail_over(self) -> bool:
        return True  # one address: every failure backs off

    def connected_for_long(self) -> None:
        pass


def session(client: FakeClient, renews: list[int]) -> Session:
    return Session(client, '{"name": "backend-1"}',  # type: ignore[arg-type]
                   on_trust_bundle=lambda _: None,
                   on_renew=lambda: renews.append(1),
                   policy=SessionPolicy(interval=60, timeout=60, backoff_initial=0.001,
                                        backoff_max=0.001),
                   rng=random.Random(1))


async def test_status_follows_each_registration_and_each_change() -> None:
    client, renews = FakeClient(), list[int]()
    s = session(client, renews)
    task = asyncio.create_task(s.run())
    try:
        await eventually(lambda: len(client.calls) == 1, 5, "the first stream", interval=0.001)
        call = client.calls[0]
        call.inbox.put_nowait(REGISTERED)
        await asyncio.wait_for(s.registered, 5)
        assert call.kinds() == ["register_dataplane_json"]  # no certificate yet: no status

        s.report(FIRST)
        await eventually(lambda: call.statuses() == [FIRST], 5, "the first status", interval=0.001)
        s.report(FIRST)  # unchanged: not sent again
        s.report(SECOND)
        await eventually(lambda: len(call.statuses()) == 2, 5, "the second status", interval=0.001)
        assert call.statuses() == [FIRST, SECOND]

        # The stream breaks: the next one registers again and repeats the latest status.
        call.inbox.put_nowait(EOF)
        await eventually(lambda: len(client.calls) == 2, 5, "a new stream", interval=0.001)
        again = client.calls[1]
        again.inbox.put_nowait(REGISTERED)
        await eventually(lambda: again.statuses() == [SECOND], 5,
                         "the status after re-registering", interval=0.001)
        assert again.kinds() == ["register_dataplane_json", "status"]
        assert call.cancelled
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_changes_while_disconnected_send_only_the_latest() -> None:
    client, renews = FakeClient(), list[int]()
    s = session(client, renews)
    s.report(FIRST)
    s.report(SECOND)
    task = asyncio.create_task(s.run())
    try:
        await eventually(lambda: len(client.calls) == 1, 5, "the first stream", interval=0.001)
        client.calls[0].inbox.put_nowait(REGISTERED)
        await eventually(lambda: client.calls[0].statuses() == [SECOND], 5,
                         "the latest status", interval=0.001)
        await eventually(lambda: s.reports_sent == 1, 5, "one report", interval=0.001)
        assert client.calls[0].statuses() == [SECOND]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_renew_reaches_the_callback_once_per_message() -> None:
    client, renews = FakeClient(), list[int]()
    s = session(client, renews)
    task = asyncio.create_task(s.run())
    try:
        await eventually(lambda: len(client.calls) == 1, 5, "the first stream", interval=0.001)
        call = client.calls[0]
        call.inbox.put_nowait(REGISTERED)
        for _ in range(3):
            call.inbox.put_nowait(agent_pb2.ControlPlaneMessage(renew=agent_pb2.Renew()))
        await eventually(lambda: len(renews) == 3, 5, "three renew callbacks", interval=0.001)
        assert s.connects == 1  # Renew is an update like any other: the stream stays up
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def refusal(code: grpc.StatusCode, detail: str) -> RpcError:
    return RpcError(code.name, detail)


async def test_reconnect_hands_the_session_over_to_the_new_token_without_backoff() -> None:
    """A new token: the live stream ends and the next registers with it at once; the CP
    still holding the old session (ALREADY_EXISTS) is retried at the hand-over pace, not
    the backoff's (a minute here, so waiting for it would time the test out)."""
    client, registered = FakeClient(), list[str]()
    reads = list[int]()
    s = Session(client, '{"name": "backend-1"}',  # type: ignore[arg-type]
                on_trust_bundle=lambda _: None,
                before_connect=lambda: reads.append(1),
                on_registered=lambda _, token: registered.append(token),
                policy=SessionPolicy(interval=60, timeout=60, backoff_initial=60,
                                     backoff_max=60, handover_retry=0.001),
                rng=random.Random(1))
    task = asyncio.create_task(s.run())
    try:
        await eventually(lambda: len(client.calls) == 1, what="the first stream")
        client.calls[0].inbox.put_nowait(REGISTERED)
        await eventually(lambda: s.token == "token-1", what="the first registration")

        client.token = "token-2"
        s.reconnect()
        await eventually(lambda: len(client.calls) == 2, what="a stream with the new token")
        assert client.calls[0].cancelled  # the old session ends first
        client.calls[1].inbox.put_nowait(refusal(
            grpc.StatusCode.ALREADY_EXISTS, "dataplane 'backend-1' is already connected"))
        await eventually(lambda: len(client.calls) == 3, what="another try during the hand-over")
        client.calls[2].inbox.put_nowait(REGISTERED)
        await eventually(lambda: s.token == "token-2", what="the registration with the new token")
        assert client.tokens == ["token-1", "token-2", "token-2"]
        assert registered == ["token-1", "token-2"]
        assert len(reads) == 3  # the token file is read before every connection
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_refusal_after_registration_backs_off_and_clears_the_token() -> None:
    """Outside a hand-over a refused reconnect (the token expired) is an ordinary failure:
    no token is live until a registration succeeds."""
    client, renews = FakeClient(), list[int]()
    s = session(client, renews)
    task = asyncio.create_task(s.run())
    try:
        await eventually(lambda: len(client.calls) == 1, what="the first stream")
        client.calls[0].inbox.put_nowait(REGISTERED)
        await eventually(lambda: s.token == "token-1", what="the first registration")
        client.calls[0].inbox.put_nowait(refusal(grpc.StatusCode.UNAUTHENTICATED,
                                                 "token abc expired"))
        await eventually(lambda: len(client.calls) == 2, what="a new try")
        assert s.token == "" and "UNAUTHENTICATED" in s.last_error
        client.token = "token-2"
        client.calls[1].inbox.put_nowait(EOF)
        await eventually(lambda: len(client.calls) == 3, what="the try after")
        client.calls[2].inbox.put_nowait(REGISTERED)
        await eventually(lambda: s.token == "token-2", what="registered with the replaced token")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_write_racing_the_calls_end_is_a_break_not_a_crash() -> None:
    """A write on a stream that already ended (the CP stopped between two heartbeats)
    fails: the session registers again instead of ending."""
    client, renews = FakeClient(), list[int]()
    s = session(client, renews)
    task = asyncio.create_task(s.run())
    try:
        await eventually(lambda: len(client.calls) == 1, 5, "the first stream", interval=0.001)
        call = client.calls[0]
        call.inbox.put_nowait(REGISTERED)
        await asyncio.wait_for(s.registered, 5)
        call.finished = True
        s.report(FIRST)  # its status write meets the finished call
        await eventually(lambda: len(client.calls) == 2, 5, "a new stream", interval=0.001)
        assert not task.done()
        assert "the stream broke" in (s.last_error or "")
        client.calls[1].inbox.put_nowait(REGISTERED)
        await eventually(lambda: client.calls[1].statuses() == [FIRST], 5,
                         "the status on the new stream", interval=0.001)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
