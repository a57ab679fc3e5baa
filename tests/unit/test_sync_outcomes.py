"""sync.outcomes and sync.observed: the one way every link counts what crosses it."""

from __future__ import annotations

from typing import Any

from envoy.service.discovery.v3 import discovery_pb2

from sync.observed import Observed, outcome_of
from sync.outcomes import Counts, Outcome, Tally
from sync.stream import HEARTBEAT

T = "gossamer.io/Mesh"


def response(type_url: str = T) -> discovery_pb2.DeltaDiscoveryResponse:
    return discovery_pb2.DeltaDiscoveryResponse(type_url=type_url, nonce="1")


def answer(nack: str = "", nonce: str = "1") -> discovery_pb2.DeltaDiscoveryRequest:
    req = discovery_pb2.DeltaDiscoveryRequest(type_url=T, response_nonce=nonce)
    if nack:
        req.error_detail.code = 3
        req.error_detail.message = nack
    return req


def test_outcomes_from_the_publishers_side_and_the_subscribers() -> None:
    assert outcome_of(response(), publishing=True) is Outcome.SENT
    assert outcome_of(answer(), publishing=True) is Outcome.ACKED
    assert outcome_of(answer("bad"), publishing=True) is Outcome.NACKED
    assert outcome_of(response(), publishing=False) is Outcome.RECEIVED
    assert outcome_of(answer("bad"), publishing=False) is Outcome.REFUSED
    assert outcome_of(answer(), publishing=False) is None  # our own ACKs are not counted
    for publishing in (True, False):
        assert outcome_of(answer(nonce=""), publishing=publishing) is None  # initial request
        assert outcome_of(response(HEARTBEAT), publishing=publishing) is None
        assert outcome_of(None, publishing=publishing) is None


def test_a_tally_counts_by_type_and_keeps_the_last_nack() -> None:
    tally = Tally()
    tally.add(T, Outcome.SENT)
    tally.add(T, Outcome.SENT)
    tally.add("other", Outcome.RECEIVED)
    tally.nack(T, "x" * 3000)
    assert tally.of(T) == Counts(sent=2, nacked=1)
    assert tally.of("never") == Counts()
    assert tally.by_type(Outcome.SENT) == {T: 2}  # only the types it happened to
    assert dict(tally.by_type(Outcome.RECEIVED)) == {"other": 1}
    assert tally.by_type(Outcome.ACKED)["never"] == 0
    assert tally.totals() == Counts(sent=2, nacked=1, received=1)
    assert list(tally) == sorted([T, "other"]) and len(tally.last_nack) == 2000
    tally.of(T).sent = 99  # a copy
    assert tally.of(T).sent == 2


class Pipe:
    def __init__(self, incoming: list[Any]) -> None:
        self.incoming, self.written = incoming, []

    async def read(self) -> Any:
        return self.incoming.pop(0)

    async def write(self, message: Any) -> None:
        self.written.append(message)


async def test_an_observed_stream_reports_both_directions_and_replays_the_first() -> None:
    seen: list[Outcome] = []
    first = discovery_pb2.DeltaDiscoveryRequest(type_url=T)
    inner = Pipe([answer(), answer("bad")])
    stream = Observed(inner, lambda _, outcome: seen.append(outcome), publishing=True,
                      first=first)
    assert await stream.read() is first
    await stream.write(response())
    await stream.read()
    await stream.read()
    assert seen == [Outcome.SENT, Outcome.ACKED, Outcome.NACKED]
    assert len(inner.written) == 1 and inner.incoming == []
