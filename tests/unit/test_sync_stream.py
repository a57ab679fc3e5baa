"""The asyncio shells of ``sync.stream`` against a stream that already ended.

grpc.aio refuses a write to an RPC that finished with a bare ``asyncio.InvalidStateError``
("RPC already finished."), while the RPC's status (with the peer's reason) surfaces on
the read side. The shells must end with that status, never with the write's error, which
no caller can tell from a bug.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import pytest
from envoy.service.discovery.v3 import discovery_pb2

from sync.client_state import Applied, Mirror
from sync.engine import Engine
from sync.errors import SyncError
from sync.stream import Heartbeats, publish, subscribe


class Refused(SyncError):
    """Stands for the gRPC status the peer ended the RPC with."""


class FinishedCall:
    """A client call the peer has already ended: writes fail as grpc.aio's do, and the
    read that would deliver the status comes a moment later."""

    def __init__(self, error: BaseException | None) -> None:
        self._error = error
        self.writes = 0

    async def read(self) -> Any:
        await asyncio.sleep(0.01)
        if self._error is None:
            return None  # ended with OK: end of stream
        raise self._error

    async def write(self, message: Any) -> None:
        self.writes += 1
        raise asyncio.InvalidStateError("RPC already finished.")


def no_changes(wake: Callable[[], None]) -> Callable[[], None]:
    return lambda: None


async def nothing(applied: Applied) -> None:
    pass


BEATS = Heartbeats(interval=0.05, timeout=1.0)
MESH = "gossamer.io/Mesh"


async def test_publish_on_an_ended_call_raises_the_calls_status() -> None:
    engine = Engine()
    with pytest.raises(Refused, match="revoked"):
        await publish(engine, "zone#1", FinishedCall(Refused("revoked")), no_changes, BEATS)
    assert engine.subscribers == []


async def test_subscribe_on_an_ended_call_raises_the_calls_status() -> None:
    mirror = Mirror([MESH])
    call = FinishedCall(Refused("disabled"))
    with pytest.raises(Refused, match="disabled"):
        await subscribe(mirror, call, nothing, BEATS)
    assert call.writes == 1  # the initial request found it finished


async def test_a_call_ended_without_an_error_is_a_closed_stream() -> None:
    with pytest.raises(SyncError, match="closed the stream"):
        await subscribe(Mirror([MESH]), FinishedCall(None), nothing, BEATS)


class Chatty:
    """A stream with a message always ready, as a busy peer's is: requests for a
    publisher, responses (each a new nonce) for a subscriber."""

    def __init__(self, responses: bool) -> None:
        self._responses = responses
        self._nonces = itertools.count(1)

    async def read(self) -> Any:
        await asyncio.sleep(0)
        if self._responses:
            return discovery_pb2.DeltaDiscoveryResponse(type_url=MESH,
                                                        nonce=str(next(self._nonces)))
        return discovery_pb2.DeltaDiscoveryRequest(type_url=MESH)

    async def write(self, message: Any) -> None:
        pass


@pytest.mark.parametrize("side", ["publish", "subscribe"])
async def test_cancelling_a_busy_stream_ends_it(side: str) -> None:
    """A cancellation that lands as a message arrives must not be swallowed (it was,
    by ``asyncio.wait_for`` before Python 3.12, and stopping a control plane hung)."""
    for trial in range(100):
        if side == "publish":
            shell = publish(Engine(), "zone#1", Chatty(responses=False), no_changes, BEATS)
        else:
            shell = subscribe(Mirror([MESH]), Chatty(responses=True), nothing, BEATS)
        task = asyncio.create_task(shell)
        for _ in range(trial % 7 + 1):
            await asyncio.sleep(0)
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=0.5)
        assert done, f"trial {trial}: the cancelled {side} kept running"
        assert task.cancelled()
