"""Own-part templates (``zone_cp.own_template``): a class's own part patched with another
proxy's address is byte for byte what generating that proxy's own part gives.

Checked on every generation scenario (and with the transparent proxy, and with every
policy at once) for random addresses of one length (Hypothesis): the first two proxies
make and check the template, a third is patched from it, and its messages and engine
entries (versions and bytes) equal ``generate_own``'s encoded whole. A first address
that also occurs in something the address does not make (an inbound's own address) is
refused, and so is a second proxy at the same address (nothing to check).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.context import ProxyContext
from proxy.envoy import generate_own
from tests.unit.envoy_scenarios import context, scenario
from tests.unit.test_context_destinations import serialized
from tests.unit.test_generate_shapes import ALL_AT_ONCE, BASES, edited
from zone_cp.own_template import (
    OwnTemplate,
    Pending,
    first,
    inbounds_key,
    own_key,
    own_policies,
    policies_key,
    second,
)
from zone_cp.xds_resources import desired_entries, encode

CONTEXTS = BASES + ALL_AT_ONCE


def at(ctx: ProxyContext, address: str, inbound_address: str | None = None) -> ProxyContext:
    def edit(doc: dict[str, Any]) -> None:
        doc["networking"]["address"] = address
        if inbound_address is not None:
            for ib in doc["networking"]["inbound"][:1]:
                ib["address"] = inbound_address

    return edited(ctx, edit)


def template(a: ProxyContext, b: ProxyContext) -> OwnTemplate | Pending | None:
    _, pending = first(a, encode)
    own, found = second(b, pending, encode)
    assert serialized(own) == serialized(generate_own(b))
    return found


def octets(digits: int) -> st.SearchStrategy[str]:
    low, high = {1: (1, 9), 2: (10, 99), 3: (100, 254)}[digits]
    return st.integers(low, high).map(str)


@st.composite
def same_length(draw: st.DrawFn) -> list[str]:
    """Three different IPv4 addresses of one text length."""
    widths = draw(st.lists(st.integers(1, 3), min_size=4, max_size=4))
    ips = draw(
        st.lists(
            st.tuples(*(octets(w) for w in widths)).map(".".join),
            min_size=3,
            max_size=3,
            unique=True,
        )
    )
    return ips


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(range(len(CONTEXTS))), same_length())
def test_a_patched_own_part_is_the_generated_one(index: int, ips: list[str]) -> None:
    a, b, c = (at(CONTEXTS[index], ip) for ip in ips)
    assert own_key(a, 1) == own_key(b, 1) == own_key(c, 1)
    found = template(a, b)
    if not isinstance(found, OwnTemplate):
        # Refused only where the first address's text is also part of something else.
        assert any(ips[0] in ip for ip in ("127.0.0.1", *ips[1:])), ips
        return
    resources, entries = found.instantiate(ips[2])
    fresh = generate_own(c)
    assert serialized(resources) == serialized(fresh)
    assert entries == desired_entries(fresh)


@pytest.mark.parametrize("ctx", CONTEXTS[:3])
def test_every_scenario_makes_a_template(ctx: ProxyContext) -> None:
    assert isinstance(template(at(ctx, "10.0.0.1"), at(ctx, "10.0.0.2")), OwnTemplate)


def test_a_first_address_that_is_also_an_inbounds_is_refused() -> None:
    # Both proxies' first inbound binds 10.0.0.1 itself: patching the first proxy's part
    # would move that listener too.
    ctx = CONTEXTS[0]
    a, b = at(ctx, "10.0.0.1", "10.0.0.1"), at(ctx, "10.0.0.2", "10.0.0.1")
    assert own_key(a, 1) == own_key(b, 1)
    assert template(a, b) is None


def test_a_second_proxy_at_the_same_address_checks_nothing() -> None:
    ctx = CONTEXTS[0]
    a, b = at(ctx, "10.0.0.1"), at(ctx, "10.0.0.1")
    _, pending = first(a, encode)
    assert template(a, b) == pending


def test_only_the_address_stays_out_of_the_key() -> None:
    ctx = at(CONTEXTS[0], "10.0.0.1")
    assert own_key(ctx, 1) == own_key(at(ctx, "10.0.0.9"), 1)
    assert own_key(ctx, 1) != own_key(at(ctx, "10.0.0.19"), 1)  # another length
    assert own_key(ctx, 1) != own_key(ctx, 2)  # another matching result
    assert own_key(ctx, 1, inbounds_key(ctx.dataplane)) == own_key(ctx, 1)

    def shift(doc: dict[str, Any]) -> None:
        doc["networking"]["inbound"][0]["servicePort"] = 9999

    assert own_key(ctx, 1) != own_key(edited(ctx, shift), 1)


@pytest.mark.parametrize("ctx", CONTEXTS)
def test_the_own_part_reads_no_outbound_conf(ctx: ProxyContext) -> None:
    """What ``policies_key`` leaves out, the own part does not read."""
    without = dataclasses.replace(ctx, policies=own_policies(ctx.policies))
    assert serialized(generate_own(without)) == serialized(generate_own(ctx))


def test_policies_keys_are_equal_across_matchings_and_follow_inbound_confs() -> None:
    plain = context(scenario("http"))
    again = context(scenario("http"))  # matched again: equal content, other objects
    assert plain.policies is not again.policies
    assert policies_key(plain.policies) == policies_key(again.policies)
    hash(policies_key(plain.policies))
    # Another MeshTrafficPermission (the inbound's RBAC), or none: another key.
    for name in ("traffic-permission", "no-permission"):
        other = context(scenario(name)).policies
        assert policies_key(other) != policies_key(plain.policies), name
    # The same Dataplane with an inbound MeshTimeout (``from``) besides the outbound one.
    timed = context(scenario("timeout"))
    outbound_only = dataclasses.replace(
        timed,
        policies=dataclasses.replace(
            timed.policies,
            kinds={k: v for k, v in timed.policies.kinds.items() if k != "MeshTimeout"},
        ),
    )
    assert policies_key(timed.policies) != policies_key(outbound_only.policies)
