"""Dialing a service's replicas in turn (``gossamer.failover``) and the ``--global``
addresses of ``zone run`` that feed it."""

from __future__ import annotations

import click
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cli.run_zone import run as zone_run
from gossamer.failover import Failover


def test_each_failure_moves_to_the_next_address_and_a_full_round_says_so() -> None:
    order = Failover(["a", "b", "c"])
    assert order.current == "a"
    assert order.failed() is False and order.current == "b"
    assert order.failed() is False and order.current == "c"
    assert order.failed() is True and order.current == "a"  # all three failed: back off


def test_a_success_starts_a_new_round_from_where_it_is() -> None:
    order = Failover(["a", "b"])
    assert order.failed() is False  # a refused; b connects
    order.succeeded()
    assert order.failed() is False and order.current == "a"  # b broke: a, no backoff yet
    assert order.failed() is True and order.current == "b"


def test_one_address_backs_off_after_every_failure() -> None:
    order = Failover(["only"])
    assert [order.failed() for _ in range(3)] == [True, True, True]
    assert order.current == "only"


def test_no_address_is_refused() -> None:
    with pytest.raises(ValueError, match="no address"):
        Failover([])


@given(st.integers(1, 5), st.lists(st.booleans(), max_size=40))
def test_every_address_is_tried_before_a_backoff(n: int, successes: list[bool]) -> None:
    """Between two backoffs (with no success in between) each address is dialled once."""
    order = Failover(list(range(n)))
    tried: list[int] = []
    for success in successes:
        tried.append(order.current)
        if success:
            order.succeeded()
            tried = []
        elif order.failed():
            assert sorted(tried[-n:]) == list(range(n))
            tried = []


def _global_urls(*args: str) -> tuple[str, ...]:
    """``--global`` as ``zone run`` parses and checks it (the command is not run)."""
    ctx = zone_run.make_context("run", ["--zone", "east", *args])
    urls = ctx.params["global_urls"]
    assert isinstance(urls, tuple)
    return urls


def test_global_takes_repeated_and_comma_separated_addresses() -> None:
    assert _global_urls("--global", "grpcs://g1:5685, grpcs://g2:5685",
                        "--global", "grpcs://[::1]:5685", "--global", "grpcs://g1:5685") == (
        "grpcs://g1:5685", "grpcs://g2:5685", "grpcs://[::1]:5685")


def test_global_addresses_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOSSAMER_GLOBAL_ADDRESS", "grpcs://g1:5685,grpcs://g2:5685 grpcs://g3:1")
    assert _global_urls() == ("grpcs://g1:5685", "grpcs://g2:5685", "grpcs://g3:1")


@pytest.mark.parametrize(("value", "says"), [
    ("grpcs://g1:5685,grpc://g2:5685", "plaintext grpc://"),
    ("grpcs://g1:5685,g2", "expected grpcs://HOST:PORT"),
    (",", "no address"),
])
def test_a_bad_global_address_is_named(value: str, says: str) -> None:
    with pytest.raises(click.BadParameter, match=says):
        _global_urls("--global", value)
