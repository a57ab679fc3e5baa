"""The VIP allocator (``zone_cp.vips``): unique, stable, bounded, released late."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gossamer.model.base import Resource, check_name
from gossamer.model.virtualip import SERVICE_LABEL, VirtualIPSpec, resource_name, service_of
from zone_cp.vips import (
    Absences,
    VipsExhausted,
    allocate,
    next_free,
    parse_cidr,
    usable,
)

A = ipaddress.ip_address
DEFAULT = parse_cidr("240.0.0.0/4")

services_st = st.sets(st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True), max_size=30)
networks_st = st.sampled_from(["10.0.0.0/29", "10.0.0.0/28", "10.1.2.0/24", "240.0.0.0/4",
                               "fd00::/125", "fd00::/120"]).map(parse_cidr)


def test_the_first_services_get_the_first_addresses_in_name_order() -> None:
    assert allocate(DEFAULT, {}, ["web", "backend"]) == {"backend": A("240.0.0.1"),
                                                          "web": A("240.0.0.2")}


def test_a_new_service_gets_the_address_after_the_highest() -> None:
    current = {"a": A("240.0.0.1"), "b": A("240.0.0.9")}
    assert allocate(DEFAULT, current, ["a", "b", "c"]) == {"c": A("240.0.0.10")}


def test_an_address_freed_low_in_the_range_is_not_handed_out_next() -> None:
    # "a" at .1 was released; "b" still holds .2: the next one is .3, not .1.
    assert allocate(DEFAULT, {"b": A("240.0.0.2")}, ["b", "new"]) == {"new": A("240.0.0.3")}


def test_allocation_wraps_and_skips_the_network_and_broadcast_addresses() -> None:
    net = parse_cidr("10.0.0.0/29")  # usable: .1 - .6
    current = {"x": A("10.0.0.6"), "y": A("10.0.0.2")}
    assert allocate(net, current, ["x", "y", "a", "b"]) == {"a": A("10.0.0.1"),
                                                             "b": A("10.0.0.3")}
    assert next_free(DEFAULT, set(), A("255.255.255.254")) == A("240.0.0.1")
    assert not usable(DEFAULT, A("255.255.255.255")) and not usable(DEFAULT, A("240.0.0.0"))


def test_unusable_and_duplicate_addresses_are_replaced() -> None:
    current = {"a": A("10.9.9.9"),       # outside the range (the operator changed it)
               "b": A("240.0.0.0"),      # the network address
               "c": A("240.0.0.5"), "d": A("240.0.0.5")}  # two services, one address
    assert allocate(DEFAULT, current, ["a", "b", "c", "d"]) == {
        "a": A("240.0.0.6"), "b": A("240.0.0.7"), "d": A("240.0.0.8")}


def test_a_full_range_is_an_error_naming_it() -> None:
    net = parse_cidr("10.0.0.0/30")  # usable: .1 and .2
    with pytest.raises(VipsExhausted, match=r"10\.0\.0\.0/30"):
        allocate(net, {"a": A("10.0.0.1")}, ["a", "b", "c"])


@pytest.mark.parametrize("cidr", ["10.0.0.1/32", "10.0.0.0/31", "fd00::/128", "10.0.0.1/24",
                                  "nonsense"])
def test_ranges_without_a_usable_address_are_refused(cidr: str) -> None:
    with pytest.raises(ValueError):
        parse_cidr(cidr)


@settings(max_examples=300)
@given(networks_st, services_st, services_st)
def test_allocation_is_unique_stable_and_bounded(network: object, first: set[str],
                                                 second: set[str]) -> None:
    assert isinstance(network, ipaddress.IPv4Network | ipaddress.IPv6Network)
    capacity = network.num_addresses - (2 if network.version == 4 else 1)
    assume(len(first | second) <= capacity)
    held = allocate(network, {}, first)
    assert set(held) == first
    # A second round: some services go, others come; survivors keep their address.
    current = {s: a for s, a in held.items() if s in second}
    changes = allocate(network, current, second)
    assert set(changes) == second - set(current)
    after = {**current, **changes}
    assert set(after) == second
    assert len(set(after.values())) == len(after), "two services share an address"
    assert all(usable(network, a) for a in after.values())
    # Idempotent: nothing left to do.
    assert allocate(network, after, second) == {}


@given(networks_st, st.integers(0, 40))
def test_exhaustion_only_when_the_range_is_full(network: object, count: int) -> None:
    assert isinstance(network, ipaddress.IPv4Network | ipaddress.IPv6Network)
    capacity = network.num_addresses - (2 if network.version == 4 else 1)
    names = [f"s{i}" for i in range(count)]
    if count <= capacity:
        assert len(set(allocate(network, {}, names).values())) == count
    else:
        with pytest.raises(VipsExhausted):
            allocate(network, {}, names)


def test_a_gone_service_is_released_after_the_grace_period_only() -> None:
    absences = Absences(grace=60)
    assert absences.expired(["a", "b"], ["a", "b"], now=0) == []
    assert absences.next_expiry() is None
    assert absences.expired(["a", "b"], ["a"], now=10) == []     # b gone since 10
    assert absences.next_expiry() == 70
    assert absences.expired(["a", "b"], ["a"], now=69) == []
    assert absences.expired(["a", "b"], ["a"], now=70) == ["b"]
    assert absences.next_expiry() is None


def test_a_service_that_returns_within_the_grace_period_keeps_its_vip() -> None:
    absences = Absences(grace=60)
    assert absences.expired(["a"], [], now=0) == []
    assert absences.expired(["a"], ["a"], now=30) == []  # back (a restart)
    assert absences.expired(["a"], [], now=40) == []     # gone again: a new period
    assert absences.expired(["a"], [], now=99) == []
    assert absences.expired(["a"], [], now=100) == ["a"]


def test_resource_names_of_services() -> None:
    assert resource_name("backend") == "backend"
    odd = resource_name("Backend_svc:80")
    assert odd.startswith("backend-svc-80-") and not check_name(odd)
    assert resource_name("Backend_svc:80") == odd != resource_name("backend_svc:80")
    assert not check_name(resource_name("__"))
    vip = Resource("VirtualIP", odd, VirtualIPSpec(ip="240.0.0.1"), mesh="default",
                   labels={SERVICE_LABEL: "Backend_svc:80"})
    assert service_of(vip) == "Backend_svc:80"
    hand_made = Resource("VirtualIP", "db", VirtualIPSpec(ip="240.0.0.2"), mesh="default")
    assert service_of(hand_made) == "db"
