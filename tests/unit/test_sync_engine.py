"""Scenario tests of the delta engine: whole conversations, no sockets, no mocks.

Each test plays a conversation between an ``Engine`` and a ``Mirror`` (or hand-written
requests) and asserts on what crosses the wire and on what each side then holds.
"""

from __future__ import annotations

import pytest

from gossamer.errors import InvalidResource
from sync.client_state import Mirror
from sync.engine import Engine, counter_nonces
from sync.errors import LocalProtocolError, RemoteProtocolError
from sync.messages import Entry, Nack, Payload, Request, Response
from sync.subscription import Backoff, Delta, Limits, reconcile

T = "test/Thing"
U = "test/Other"


def entry(version: str, body: str | None = None) -> Entry:
    return Entry(version, Payload("type.googleapis.com/test.Thing", (body or version).encode()))


def bad_is_refused(type_url: str, name: str, e: Entry) -> None:
    if e.payload.value.startswith(b"bad"):
        raise InvalidResource(f"{name} is bad")


def versions(resp: Response) -> dict[str, str]:
    return {n: e.version for n, e in resp.resources.items()}


def only(responses: list[Response]) -> Response:
    assert len(responses) == 1, responses
    return responses[0]


def start(engine: Engine, mirror: Mirror, sid: str = "s", now: float = 0.0) -> list[Response]:
    engine.connect(sid)
    out: list[Response] = []
    for req in mirror.initial_requests():
        out += engine.on_request(sid, req, now)
    return out


def deliver(engine: Engine, mirror: Mirror, responses: list[Response], sid: str = "s",
            now: float = 0.0) -> list[Response]:
    """Apply responses at the mirror and feed its answers back; return what that triggers."""
    out: list[Response] = []
    for resp in responses:
        out += engine.on_request(sid, mirror.on_response(resp).reply, now)
    return out


def sync_until_quiet(engine: Engine, mirror: Mirror, responses: list[Response],
                     now: float = 0.0) -> None:
    for _ in range(100):
        if not responses:
            return
        responses = deliver(engine, mirror, responses, now=now)
    raise AssertionError("no quiescence")


# -- reconcile -------------------------------------------------------------------------


def test_reconcile_sends_changed_and_new_and_removes_unknown() -> None:
    desired = {"a": entry("1"), "b": entry("2"), "c": entry("1")}
    delta = reconcile(desired, {"a": "1", "b": "1", "z": "9"})
    assert list(delta.updated) == ["b", "c"]
    assert delta.removed == ("z",)
    assert not reconcile(desired, {"a": "1", "b": "2", "c": "1"})


def test_reconcile_is_everything_for_an_empty_subscriber() -> None:
    desired = {"b": entry("1"), "a": entry("1")}
    assert reconcile(desired, {}) == Delta({"a": entry("1"), "b": entry("1")}, ())


# -- conversations -----------------------------------------------------------------------


def test_initial_sync_sends_everything_then_ack_settles() -> None:
    engine, mirror = Engine(), Mirror([T])
    engine.set_desired(T, {"a": entry("1"), "b": entry("1")})
    resp = only(start(engine, mirror))
    assert versions(resp) == {"a": "1", "b": "1"} and not resp.removed
    assert deliver(engine, mirror, [resp]) == []
    assert engine.acked("s", T) == {"a": "1", "b": "1"}
    assert mirror.versions(T) == {"a": "1", "b": "1"}
    assert engine.pending("s", 0.0) == []


def test_first_response_is_sent_even_when_empty() -> None:
    engine, mirror = Engine(), Mirror([T])
    resp = only(start(engine, mirror))
    assert not resp.resources and not resp.removed
    assert deliver(engine, mirror, [resp]) == []


def test_update_and_remove_send_only_the_change() -> None:
    engine, mirror = Engine(), Mirror([T])
    engine.set_desired(T, {"a": entry("1"), "b": entry("1")})
    sync_until_quiet(engine, mirror, start(engine, mirror))
    engine.put(T, "a", entry("2"))
    resp = only(engine.pending("s", 0.0))
    assert versions(resp) == {"a": "2"} and not resp.removed
    deliver(engine, mirror, [resp])
    engine.remove(T, "b")
    resp = only(engine.pending("s", 0.0))
    assert not resp.resources and resp.removed == {"b"}
    deliver(engine, mirror, [resp])
    assert mirror.versions(T) == {"a": "2"}
    assert engine.acked("s", T) == {"a": "2"}


def test_changes_wait_for_the_ack_and_then_leave_together() -> None:
    engine, mirror = Engine(), Mirror([T])
    resp = only(start(engine, mirror))
    engine.put(T, "a", entry("1"))
    engine.put(T, "b", entry("1"))
    assert engine.pending("s", 0.0) == []  # the empty first response is not ACKed yet
    second = only(deliver(engine, mirror, [resp]))
    assert versions(second) == {"a": "1", "b": "1"}


def test_nack_holds_the_bad_resource_with_backoff_while_others_flow() -> None:
    engine = Engine(backoff=Backoff(initial=1.0, factor=2.0, maximum=8.0))
    mirror = Mirror([T], bad_is_refused)
    engine.set_desired(T, {"a": entry("1", "bad"), "b": entry("1")})
    resp = only(start(engine, mirror, now=10.0))
    applied = mirror.on_response(resp)
    assert applied.reply.is_nack and applied.rejected.keys() == {"a"}
    assert engine.on_request("s", applied.reply, 10.0) == []
    assert engine.acked("s", T) == {"b": "1"}  # the good half of the response counts
    assert engine.held("s", T) == {"a": "1"}
    assert engine.next_deadline("s") == 11.0

    engine.put(T, "c", entry("1"))  # other resources keep flowing
    resp = only(engine.pending("s", 10.5))
    assert versions(resp) == {"c": "1"}
    assert deliver(engine, mirror, [resp], now=10.5) == []

    retry = only(engine.pending("s", 11.0))  # backoff over: retried, refused again
    assert versions(retry) == {"a": "1"}
    assert deliver(engine, mirror, [retry], now=11.0) == []
    assert engine.next_deadline("s") == 13.0  # doubled
    assert engine.pending("s", 12.9) == []

    engine.put(T, "a", entry("2"))  # a fix goes out at once, backoff or not
    fix = only(engine.pending("s", 12.0))
    assert versions(fix) == {"a": "2"}
    deliver(engine, mirror, [fix], now=12.0)
    assert engine.held("s", T) == {} and engine.next_deadline("s") is None
    assert mirror.versions(T) == {"a": "2", "b": "1", "c": "1"}
    assert engine.counters("s")[T].nacked == 2


def test_refused_update_keeps_the_previous_version_at_the_subscriber() -> None:
    engine, mirror = Engine(), Mirror([T], bad_is_refused)
    engine.set_desired(T, {"a": entry("1")})
    sync_until_quiet(engine, mirror, start(engine, mirror))
    engine.put(T, "a", entry("2", "bad"))
    deliver(engine, mirror, engine.pending("s", 0.0))
    assert mirror.versions(T) == {"a": "1"} and engine.acked("s", T) == {"a": "1"}


def test_deleting_a_refused_resource_ends_its_hold() -> None:
    engine, mirror = Engine(), Mirror([T], bad_is_refused)
    engine.set_desired(T, {"a": entry("1", "bad")})
    deliver(engine, mirror, start(engine, mirror))
    assert engine.held("s", T) == {"a": "1"}
    engine.remove(T, "a")
    assert engine.pending("s", 100.0) == []  # never acked: no removal is due
    assert engine.next_deadline("s") is None and mirror.versions(T) == {}


def test_envoy_style_nack_isolates_the_refused_resources_on_retry() -> None:
    engine = Engine(backoff=Backoff(initial=1.0))
    envoy = Mirror([T], bad_is_refused, whole_response=True)
    engine.set_desired(T, {"a": entry("1", "bad"), "b": entry("1")})
    resp = only(start(engine, envoy))
    applied = envoy.on_response(resp)
    assert applied.reply.error is not None and applied.reply.error.rejected is None
    assert engine.on_request("s", applied.reply, 0.0) == []
    assert envoy.versions(T) == {} and engine.acked("s", T) == {}
    assert engine.held("s", T) == {"a": "1", "b": "1"}

    probe = only(engine.pending("s", 1.0))  # each retried alone, so b is not stuck behind a
    assert versions(probe) == {"a": "1"}
    probe = only(deliver(engine, envoy, [probe], now=1.0))
    assert versions(probe) == {"b": "1"}
    assert deliver(engine, envoy, [probe], now=1.0) == []
    assert envoy.versions(T) == {"b": "1"} and engine.held("s", T) == {"a": "1"}


def test_resume_sends_only_the_difference() -> None:
    mirror = Mirror([T])
    mirror.load(T, {"a": entry("1"), "b": entry("1"), "c": entry("1")})
    engine = Engine()
    engine.set_desired(T, {"a": entry("1"), "b": entry("2"), "d": entry("1")})
    resp = only(start(engine, mirror))
    assert versions(resp) == {"b": "2", "d": "1"}
    assert resp.removed == {"c"}
    deliver(engine, mirror, [resp])
    assert mirror.versions(T) == {"a": "1", "b": "2", "d": "1"}


def test_reconnect_forgets_what_was_in_flight_and_trusts_the_report() -> None:
    engine, mirror = Engine(), Mirror([T])
    engine.set_desired(T, {"a": entry("1")})
    lost = start(engine, mirror, "s1")  # never delivered
    assert versions(only(lost)) == {"a": "1"}
    engine.disconnect("s1")
    resp = only(start(engine, mirror, "s2"))
    assert versions(resp) == {"a": "1"}
    # An answer from the dead session's era finds nothing in flight under that nonce.
    stale = Request(type_url=T, response_nonce=lost[0].nonce)
    assert engine.on_request("s2", stale, 0.0) == []
    assert engine.acked("s2", T) == {}
    deliver(engine, mirror, [resp], sid="s2")
    assert engine.acked("s2", T) == {"a": "1"}


def test_types_are_independent() -> None:
    engine, mirror = Engine(), Mirror([T, U], bad_is_refused)
    engine.set_desired(T, {"a": entry("1", "bad")})
    engine.set_desired(U, {"x": entry("1")})
    first = start(engine, mirror)
    assert {r.type_url for r in first} == {T, U}
    sync_until_quiet(engine, mirror, first)
    engine.put(U, "y", entry("1"))
    resp = only(engine.pending("s", 0.5))  # T's hold does not stop U
    assert resp.type_url == U and versions(resp) == {"y": "1"}
    deliver(engine, mirror, [resp])
    assert mirror.versions(U) == {"x": "1", "y": "1"} and mirror.versions(T) == {}


def test_an_answer_for_one_type_does_not_settle_another() -> None:
    engine = Engine()
    engine.set_desired(T, {"a": entry("1")})
    engine.set_desired(U, {"x": entry("1")})
    engine.connect("s")
    t_resp = only(engine.on_request("s", Request(type_url=T), 0.0))
    u_resp = only(engine.on_request("s", Request(type_url=U), 0.0))
    engine.on_request("s", Request(type_url=U, response_nonce=t_resp.nonce), 0.0)
    assert engine.acked("s", U) == {} and engine.acked("s", T) == {}
    engine.on_request("s", Request(type_url=U, response_nonce=u_resp.nonce), 0.0)
    assert engine.acked("s", U) == {"x": "1"}


def test_a_quiet_type_stays_quiet_until_its_snapshot_or_subscriber_changes() -> None:
    """A type found in sync is not reconciled again on another type's ACK
    (``TypeState.quiet_at``), and whatever changes on either side is still sent."""
    engine, mirror = Engine(), Mirror([T, U])
    engine.set_desired(T, {"a": entry("1")})
    engine.set_desired(U, {"x": entry("1")})
    sync_until_quiet(engine, mirror, start(engine, mirror))
    engine.put(U, "y", entry("1"))
    resp = only(engine.pending("s", 0.0))
    assert resp.type_url == U
    t_state = engine._sessions["s"].types[T]  # the skip itself is what is tested here
    assert t_state.quiet_at == 1  # T had nothing to send at its first snapshot
    assert deliver(engine, mirror, [resp]) == []
    engine.put(T, "b", entry("1"))  # a new snapshot generation of T
    resp = only(engine.pending("s", 0.0))
    assert resp.type_url == T and versions(resp) == {"b": "1"}
    deliver(engine, mirror, [resp])
    engine.set_desired(T, {"a": entry("2"), "b": entry("1")})
    assert versions(only(engine.pending("s", 0.0))) == {"a": "2"}
    assert engine.acked("s", T) == {"a": "1", "b": "1"}


def test_an_acked_whole_response_leaves_the_type_quiet_and_changes_still_flow() -> None:
    engine = Engine(limits=Limits(max_resources=2))
    engine.set_desired(T, {"a": entry("1")})
    engine.connect("s")
    resp = only(engine.on_request("s", Request(type_url=T), 0.0))
    state = engine._sessions["s"].types[T]  # the skip itself is what is tested here
    assert engine.on_request("s", Request(type_url=T, response_nonce=resp.nonce), 0.0) == []
    assert state.quiet_at == 1  # the ACKed response was all of snapshot 1
    # A change while a response is in flight leaves after its ACK.
    engine.put(T, "b", entry("1"))
    resp = only(engine.pending("s", 0.0))
    engine.put(T, "c", entry("1"))
    after = only(engine.on_request("s", Request(type_url=T, response_nonce=resp.nonce), 0.0))
    assert versions(after) == {"c": "1"}
    # A response cut by the limits is not the whole difference: the rest follows.
    engine.on_request("s", Request(type_url=T, response_nonce=after.nonce), 0.0)
    engine.set_desired(T, {n: entry("2") for n in "abcd"})
    first = only(engine.pending("s", 0.0))
    assert len(first.resources) == 2
    rest = only(engine.on_request("s", Request(type_url=T, response_nonce=first.nonce), 0.0))
    assert set(rest.resources) | set(first.resources) == set("abcd")
    assert engine.on_request("s", Request(type_url=T, response_nonce=rest.nonce), 0.0) == []
    assert engine.acked("s", T) == {n: "2" for n in "abcd"}


def test_a_subscription_change_in_an_ack_is_answered() -> None:
    engine = Engine()
    engine.set_desired(T, {"a": entry("1"), "b": entry("1")})
    engine.connect("s")
    resp = only(engine.on_request("s", Request(type_url=T, subscribe=frozenset({"a"})), 0.0))
    ack = Request(type_url=T, response_nonce=resp.nonce, subscribe=frozenset({"b"}))
    assert versions(only(engine.on_request("s", ack, 0.0))) == {"b": "1"}


def test_a_subscription_change_ends_the_quiet() -> None:
    engine = Engine()
    engine.set_desired(T, {"a": entry("1"), "b": entry("1")})
    engine.connect("s")
    resp = only(engine.on_request("s", Request(type_url=T, subscribe=frozenset({"a"})), 0.0))
    assert engine.on_request("s", Request(type_url=T, response_nonce=resp.nonce), 0.0) == []
    more = Request(type_url=T, subscribe=frozenset({"b"}))  # same snapshot, a new name
    assert versions(only(engine.on_request("s", more, 0.0))) == {"b": "1"}


def test_explicit_subscriptions() -> None:
    engine = Engine()
    engine.set_desired(T, {"a": entry("1"), "b": entry("1")})
    engine.connect("s")
    resp = only(engine.on_request("s", Request(type_url=T, subscribe=frozenset({"a"})), 0.0))
    assert versions(resp) == {"a": "1"}
    ack = Request(type_url=T, response_nonce=resp.nonce, subscribe=frozenset({"b"}))
    resp = only(engine.on_request("s", ack, 0.0))
    assert versions(resp) == {"b": "1"}
    ack = Request(type_url=T, response_nonce=resp.nonce, unsubscribe=frozenset({"a"}))
    assert engine.on_request("s", ack, 0.0) == []  # no removal for an unsubscribed name
    assert engine.acked("s", T) == {"b": "1"}
    engine.remove(T, "a")
    assert engine.pending("s", 0.0) == []


def test_limits_split_a_large_sync_into_several_responses() -> None:
    engine, mirror = Engine(limits=Limits(max_resources=2)), Mirror([T])
    engine.set_desired(T, {f"r{i}": entry("1") for i in range(5)})
    sizes = []
    responses = start(engine, mirror)
    while responses:
        sizes.append(len(only(responses).resources))
        responses = deliver(engine, mirror, responses)
    assert sizes == [2, 2, 1]
    assert len(mirror.versions(T)) == 5


def test_injected_nonces_are_used() -> None:
    engine = Engine(nonces=counter_nonces("zone-a-"))
    engine.connect("s")
    assert only(engine.on_request("s", Request(type_url=T), 0.0)).nonce == "zone-a-1"


def test_misuse_is_a_local_error_and_bad_messages_are_remote() -> None:
    engine = Engine()
    with pytest.raises(LocalProtocolError):
        engine.on_request("nobody", Request(type_url=T), 0.0)
    engine.connect("s")
    with pytest.raises(LocalProtocolError):
        engine.connect("s")
    with pytest.raises(RemoteProtocolError):
        Request(type_url="")
    with pytest.raises(RemoteProtocolError):
        Request(type_url=T, error=Nack("no nonce"))
    with pytest.raises(RemoteProtocolError):
        Mirror([T]).on_response(Response(type_url=U, nonce="1"))
