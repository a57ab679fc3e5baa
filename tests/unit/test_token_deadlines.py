"""The deadlines of tokens in use (``zone_cp.token_deadlines``): which holds end when, with
no clock but the one passed in; and a model check over random operations."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from zone_cp.token_deadlines import Deadlines, Withdrawn


def test_holds_end_at_their_tokens_expiry_in_order() -> None:
    d: Deadlines[str] = Deadlines()
    d.add("a", "t1", 100.0)
    d.add("b", "t2", 50.0)
    d.add("c", "t1", 100.0)
    assert d.next_at() == 50.0
    assert d.due(49.9) == []
    assert d.due(50.0) == [("b", Withdrawn("expired", "t2"))]
    assert d.next_at() == 100.0
    assert sorted(k for k, _ in d.due(1000.0)) == ["a", "c"]
    assert d.next_at() is None and len(d) == 0


def test_a_revocation_ends_every_hold_on_that_token_only() -> None:
    d: Deadlines[int] = Deadlines()
    d.add(1, "t1", 100.0)
    d.add(2, "t1", 100.0)
    d.add(3, "t2", 100.0)
    assert d.revoked("t1") == [(1, Withdrawn("revoked", "t1")), (2, Withdrawn("revoked", "t1"))]
    assert d.revoked("t1") == [] and d.revoked("nope") == []
    assert 3 in d and d.due(100.0) == [(3, Withdrawn("expired", "t2"))]


def test_removed_or_replaced_holds_do_not_fire() -> None:
    d: Deadlines[str] = Deadlines()
    d.add("a", "t1", 10.0)
    d.add("a", "t2", 20.0)  # the same key, a new token: only the new deadline counts
    d.add("b", "t3", 5.0)
    d.remove("b")
    d.remove("never")
    assert d.next_at() == 20.0
    assert d.revoked("t1") == []
    assert d.due(20.0) == [("a", Withdrawn("expired", "t2"))]


def test_churn_does_not_grow_the_heap() -> None:
    d: Deadlines[int] = Deadlines()
    for key in range(10_000):  # reconnects with a token valid for years
        d.add(key, f"t{key}", 1e12)
        d.remove(key)
    assert len(d._heap) <= 64 + 2
    d.add(1, "t", 5.0)
    assert d.next_at() == 5.0


def test_the_reason_names_the_token_and_what_to_do() -> None:
    assert "token t9 was revoked while in use" in Withdrawn("revoked", "t9").detail
    assert "token t9 expired" in Withdrawn("expired", "t9").detail
    assert "new token" in Withdrawn("expired", "t9").detail


ops = st.lists(st.one_of(
    st.tuples(st.just("add"), st.integers(0, 5), st.integers(0, 3), st.integers(0, 20)),
    st.tuples(st.just("remove"), st.integers(0, 5)),
    st.tuples(st.just("due"), st.integers(0, 20)),
    st.tuples(st.just("revoke"), st.integers(0, 3)),
), max_size=60)


@given(ops)
def test_matches_a_plain_table(operations: list[tuple[object, ...]]) -> None:
    """Invariant: every hold ends exactly once, by its own token's expiry or revocation,
    never after it was removed or replaced."""
    d: Deadlines[int] = Deadlines()
    model: dict[int, tuple[str, float]] = {}
    for op in operations:
        if op[0] == "add":
            _, key, tok, at = op
            assert isinstance(key, int) and isinstance(at, int)
            d.add(key, f"t{tok}", float(at))
            model[key] = (f"t{tok}", float(at))
        elif op[0] == "remove":
            d.remove(op[1])
            model.pop(op[1], None)  # type: ignore[call-overload]
        elif op[0] == "due":
            now = float(op[1])  # type: ignore[arg-type]
            expected = {k for k, (_, at) in model.items() if at <= now}
            got = d.due(now)
            assert {k for k, _ in got} == expected and len(got) == len(expected)
            assert all(w == Withdrawn("expired", model[k][0]) for k, w in got)
            for k in expected:
                del model[k]
        else:
            tok = f"t{op[1]}"
            expected = {k for k, (t, _) in model.items() if t == tok}
            assert {k for k, _ in d.revoked(tok)} == expected
            for k in expected:
                del model[k]
        assert len(d) == len(model)
        assert d.next_at() == (min(at for _, at in model.values()) if model else None)
