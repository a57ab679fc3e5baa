"""Hypothesis: whatever happens on the way, a subscriber converges to the desired state.

A rule-based machine drives one ``Engine`` (the publisher) and one ``Mirror`` (the
subscriber) through a model network: two FIFO queues (responses down, requests up) whose
messages pass through the real protobuf conversion (``sync.wire``) and bytes. Rules create,
update and delete resources of two types (some payloads marked bad, which the subscriber
refuses), deliver or drop messages, let time pass, disconnect and reconnect (the new
session starts from the mirror's versions).

A lost message means a broken stream, as on gRPC: after a drop the model reconnects
before it expects progress again, never otherwise.

Invariants:

* always: every resource the subscriber holds is a (name, version, payload) that was
  desired at some point: nothing invented, nothing refused applied;
* after ``settle`` (fix every bad payload, let the network run until nothing moves,
  advancing the clock only to the engine's own deadlines): the subscriber holds exactly
  the desired state (nothing lost, nothing resurrected) and the engine's acked view
  matches it.

Both NACK styles run: per resource (Gossamer's mirror) and whole response (Envoy's).
"""

from __future__ import annotations

from collections import deque

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from gossamer.errors import InvalidResource
from sync import wire
from sync.client_state import Mirror
from sync.engine import Engine
from sync.messages import Entry, Payload, Request, Response
from sync.subscription import Backoff, Limits

TYPES = ("test/A", "test/B")
NAMES = ("a", "b", "c", "d", "e")
MAX_SETTLE_STEPS = 2000
GRACE = 30.0  # seconds of model time: several maximum backoffs


def refuse_bad(type_url: str, name: str, entry: Entry) -> None:
    if entry.payload.value.startswith(b"bad"):
        raise InvalidResource(f"{name}@{entry.version} is marked bad")


def over_the_wire_down(resp: Response) -> Response:
    raw = wire.response_to_proto(resp).SerializeToString()
    return wire.response_from_proto(wire.DeltaDiscoveryResponse.FromString(raw))


def over_the_wire_up(req: Request) -> Request:
    raw = wire.request_to_proto(req).SerializeToString()
    return wire.request_from_proto(wire.DeltaDiscoveryRequest.FromString(raw))


class SyncMachine(RuleBasedStateMachine):
    whole_response = False

    def __init__(self) -> None:
        super().__init__()
        self.engine = Engine(backoff=Backoff(initial=1.0, factor=2.0, maximum=8.0),
                             limits=Limits(max_resources=3))
        self.mirror = Mirror(TYPES, refuse_bad, whole_response=self.whole_response)
        self.desired: dict[str, dict[str, Entry]] = {t: {} for t in TYPES}
        self.ever: set[tuple[str, str, Entry]] = set()
        self.versions = 0
        self.now = 0.0
        self.sessions = 0
        self.sid: str | None = None
        self.broken = False
        self.down: deque[Response] = deque()
        self.up: deque[Request] = deque()

    # -- the desired state ------------------------------------------------------------

    @rule(type_url=st.sampled_from(TYPES), name=st.sampled_from(NAMES), bad=st.booleans())
    def put(self, type_url: str, name: str, bad: bool) -> None:
        self.versions += 1
        version = f"v{self.versions}"
        entry = Entry(version, Payload("type.googleapis.com/test.Thing",
                                       f"{'bad' if bad else 'ok'}:{name}:{version}".encode()))
        self.desired[type_url][name] = entry
        self.ever.add((type_url, name, entry))
        self.engine.put(type_url, name, entry)

    @rule(type_url=st.sampled_from(TYPES), name=st.sampled_from(NAMES))
    def delete(self, type_url: str, name: str) -> None:
        self.desired[type_url].pop(name, None)
        self.engine.remove(type_url, name)

    @rule(type_url=st.sampled_from(TYPES), keep=st.sets(st.sampled_from(NAMES)))
    def replace_snapshot(self, type_url: str, keep: set[str]) -> None:
        """A full resync from the store: the same entries, minus the ones not kept."""
        self.desired[type_url] = {n: e for n, e in self.desired[type_url].items() if n in keep}
        self.engine.set_desired(type_url, self.desired[type_url])

    # -- the network ------------------------------------------------------------------

    @precondition(lambda self: self.sid is None)
    @rule()
    def connect(self) -> None:
        self.sessions += 1
        self.sid = f"s{self.sessions}"
        self.broken = False
        self.engine.connect(self.sid)
        self.up.extend(self.mirror.initial_requests())

    @precondition(lambda self: self.sid is not None)
    @rule()
    def disconnect(self) -> None:
        assert self.sid is not None
        self.engine.disconnect(self.sid)
        self.sid = None
        self.down.clear()
        self.up.clear()

    @precondition(lambda self: self.sid is not None)
    @rule()
    def publish(self) -> None:
        assert self.sid is not None
        self.down.extend(self.engine.pending(self.sid, self.now))

    @precondition(lambda self: bool(self.up))
    @rule()
    def deliver_request(self) -> None:
        assert self.sid is not None
        req = over_the_wire_up(self.up.popleft())
        self.down.extend(self.engine.on_request(self.sid, req, self.now))

    @precondition(lambda self: bool(self.down))
    @rule()
    def deliver_response(self) -> None:
        applied = self.mirror.on_response(over_the_wire_down(self.down.popleft()))
        self.up.append(applied.reply)

    @precondition(lambda self: bool(self.down))
    @rule()
    def drop_response(self) -> None:
        self.down.popleft()
        self.broken = True

    @precondition(lambda self: bool(self.up))
    @rule()
    def drop_request(self) -> None:
        self.up.popleft()
        self.broken = True

    @rule(seconds=st.sampled_from([0.25, 1.0, 3.0, 10.0]))
    def tick(self, seconds: float) -> None:
        self.now += seconds

    # -- invariants -------------------------------------------------------------------

    @invariant()
    def holds_only_what_was_once_desired(self) -> None:
        for type_url in TYPES:
            for name, entry in self.mirror.resources(type_url).items():
                assert (type_url, name, entry) in self.ever, (type_url, name, entry)
                assert not entry.payload.value.startswith(b"bad")

    @rule()
    def settle(self) -> None:
        self._fix_bad_payloads()
        self._mend_stream()
        self._run_until_quiet()
        assert self.sid is not None
        for type_url in TYPES:
            assert dict(self.mirror.resources(type_url)) == self.desired[type_url], type_url
            assert dict(self.engine.acked(self.sid, type_url)) == \
                self.mirror.versions(type_url), type_url

    @rule()
    def settle_around_bad_resources(self) -> None:
        """Bad resources stay bad: every good one still arrives, every removal too."""
        self._mend_stream()
        self._run_until_quiet(until=self.now + GRACE)
        for type_url in TYPES:
            held = self.mirror.resources(type_url)
            assert held.keys() <= self.desired[type_url].keys(), type_url
            for name, entry in self.desired[type_url].items():
                if not entry.payload.value.startswith(b"bad"):
                    assert held.get(name) == entry, (type_url, name)
            assert self.sid is not None
            assert dict(self.engine.acked(self.sid, type_url)) == \
                self.mirror.versions(type_url), type_url

    def teardown(self) -> None:
        self.settle()

    def _mend_stream(self) -> None:
        if self.sid is None or self.broken:
            if self.sid is not None:
                self.disconnect()
            self.connect()

    def _fix_bad_payloads(self) -> None:
        for type_url in TYPES:
            for name, entry in list(self.desired[type_url].items()):
                if entry.payload.value.startswith(b"bad"):
                    self.put(type_url, name, bad=False)

    def _run_until_quiet(self, until: float | None = None) -> None:
        """Deliver everything; jump the clock to the engine's deadlines, up to ``until``."""
        assert self.sid is not None
        for _ in range(MAX_SETTLE_STEPS):
            if self.up:
                self.deliver_request()
            elif self.down:
                self.deliver_response()
            elif out := self.engine.pending(self.sid, self.now):
                self.down.extend(out)
            elif (deadline := self.engine.next_deadline(self.sid)) is not None and (
                    until is None or deadline <= until):
                self.now = max(self.now, deadline)
            else:
                return
        raise AssertionError("the conversation never went quiet")


class WholeResponseNackMachine(SyncMachine):
    """The subscriber refuses whole responses, as Envoy does."""

    whole_response = True


SETTINGS = settings(max_examples=150, stateful_step_count=60, deadline=None)
TestPerResourceNacks = SyncMachine.TestCase
TestPerResourceNacks.settings = SETTINGS
TestWholeResponseNacks = WholeResponseNackMachine.TestCase
TestWholeResponseNacks.settings = SETTINGS
