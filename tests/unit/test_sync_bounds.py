"""Per-peer bounds of the delta engine and the stream inbox, without sockets.

Every structure a subscriber can grow has a bound, refused before the state grows: type
URLs (known ones only, and how many), names per type and per request, name length, and
messages waiting in the inbox. Counts are ``PeerLimitExceeded`` (RESOURCE_EXHAUSTED),
types and names we do not take ``RemoteProtocolError`` (INVALID_ARGUMENT).
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from envoy.service.discovery.v3 import discovery_pb2

from sync.bounds import Bounds, PeerLimitExceeded
from sync.engine import Engine
from sync.errors import RemoteProtocolError
from sync.messages import Entry, Payload, Request
from sync.stream import NO_HEARTBEATS, abort_status, publish

MESH = "gossamer.io/Mesh"
KNOWN = Bounds(types=frozenset({MESH, "gossamer.io/Secret"}), max_types=2, max_names=5,
               max_name_length=20)


def engine(bounds: Bounds = KNOWN) -> Engine:
    e = Engine(bounds=bounds)
    e.put(MESH, "default", Entry("v1", Payload(MESH, b"x")))
    e.connect("s")
    return e


def test_an_unknown_type_url_is_refused_and_no_state_grows() -> None:
    e = engine()
    with pytest.raises(RemoteProtocolError, match="is not one this server publishes") as exc:
        e.on_request("s", Request(type_url="evil/0"), 0.0)
    assert not isinstance(exc.value, PeerLimitExceeded)
    assert abort_status(exc.value) is grpc.StatusCode.INVALID_ARGUMENT
    assert e.counters("s") == {}


def test_more_types_than_the_bound_are_refused() -> None:
    e = engine(Bounds(max_types=3))
    for i in range(3):
        e.on_request("s", Request(type_url=f"t/{i}"), 0.0)
    with pytest.raises(PeerLimitExceeded, match="more than 3 type URLs") as exc:
        e.on_request("s", Request(type_url="t/3"), 0.0)
    assert abort_status(exc.value) is grpc.StatusCode.RESOURCE_EXHAUSTED
    e.on_request("s", Request(type_url="t/0", subscribe=frozenset({"a"})), 0.0)  # known: fine
    assert len(e.counters("s")) == 3


@pytest.mark.parametrize("field", ["subscribe", "unsubscribe", "initial_versions"])
def test_too_many_names_in_one_request_are_refused(field: str) -> None:
    names = {f"n{i}": "v" for i in range(6)}
    request = Request(type_url=MESH, **{field: names if field == "initial_versions"
                                        else frozenset(names)})
    with pytest.raises(PeerLimitExceeded, match=r"6 names in .* at most 5 per type"):
        engine().on_request("s", request, 0.0)


def test_names_added_over_several_requests_are_bounded() -> None:
    e = engine()
    e.on_request("s", Request(type_url=MESH, subscribe=frozenset({"a", "b", "c"})), 0.0)
    e.on_request("s", Request(type_url=MESH, subscribe=frozenset({"d", "e"})), 0.0)
    with pytest.raises(PeerLimitExceeded, match=f"more than 5 resource names subscribed for "
                                                f"{MESH}"):
        e.on_request("s", Request(type_url=MESH, subscribe=frozenset({"f"})), 0.0)


@pytest.mark.parametrize("request_", [
    Request(type_url=MESH, subscribe=frozenset({"x" * 21})),
    Request(type_url=MESH, initial_versions={"a": "v" * 21})])
def test_long_names_and_versions_are_refused(request_: Request) -> None:
    with pytest.raises(RemoteProtocolError, match=r"a name of 21 characters .* at most 20"):
        engine().on_request("s", request_, 0.0)


def test_what_a_real_subscriber_sends_passes() -> None:
    e = engine(Bounds(types=KNOWN.types))
    out = e.on_request("s", Request(type_url=MESH, initial_versions={"default": "v0"}), 0.0)
    assert [r.resources["default"].version for r in out] == ["v1"]


# -- the inbox ------------------------------------------------------------------------------


class Flood:
    """A peer that sends requests as fast as the stream takes them, never waiting for an
    answer: its reads never yield, so they outrun the loop that handles them."""

    def __init__(self, count: int) -> None:
        self.left = count

    async def read(self) -> Any:
        if self.left == 0:
            await asyncio.Event().wait()  # never more
        self.left -= 1
        return discovery_pb2.DeltaDiscoveryRequest(type_url=MESH)

    async def write(self, message: Any) -> None:
        pass


async def test_a_peer_that_floods_the_inbox_is_cut_off() -> None:
    e = Engine(bounds=Bounds(max_queued=50))
    flood = Flood(10_000)
    with pytest.raises(PeerLimitExceeded, match="more than 50 messages from the peer wait"):
        async with asyncio.timeout(10):
            await publish(e, "s", flood, lambda wake: lambda: None, NO_HEARTBEATS)
    assert flood.left > 9_000  # it stopped reading long before the flood ended
