"""Envoy resource generation (proxy.envoy): endpoints and the piece cache (priorities and
weights of load assignments, subsets, locality failover, ingresses' localities, no
hostnames in EDS, pieces shared across proxies, one endpoint change touching one service,
zone-pinned names).
"""

from __future__ import annotations

import dataclasses
import gc
import weakref

from proxy.context import Endpoint, OutboundListener, ProxyContext, RemoteZone, Service
from proxy.envoy import (
    ClusterConfs,
    Destination,
    Hosts,
    Locality,
    PieceCache,
    endpoints,
    generate,
    outbound_cluster,
)
from tests.unit.envoy_inputs import MESH, SERVICES, WEB_HTTP, ZONE
from tests.unit.envoy_scenarios import Scenario, context, generated, scenario


def _hosts(service: str) -> Hosts:
    return Hosts.of(SERVICES[service])


def test_load_assignment_priorities_and_weights() -> None:
    cla = endpoints("backend", _hosts("backend"), ZONE)
    levels = [(e.priority, e.locality.zone, e.load_balancing_weight.value)
              for e in cla.endpoints]
    assert levels == [(0, ZONE, 4), (1, "east", 3), (1, "west", 1)]
    assert all(e.HasField("load_balancing_weight") for e in cla.endpoints)


def test_load_assignment_without_local_instances_starts_at_priority_zero() -> None:
    hosts = Hosts(remote=SERVICES["backend"].remote)
    cla = endpoints("backend", hosts, ZONE)
    assert [(e.priority, e.locality.zone) for e in cla.endpoints] == [(0, "east"), (0, "west")]


def test_subset_keeps_only_tagged_local_instances() -> None:
    hosts = Hosts.of(SERVICES["backend"], (("version", "v2"),))
    assert [h.address for h in hosts.local] == ["10.0.0.3", "10.0.0.4"]
    assert hosts.remote == ()


def test_locality_failover_threshold_sets_overprovisioning() -> None:
    cla = generated(scenario("load-balancing")).endpoints["backend"]
    assert cla.policy.overprovisioning_factor.value == 200
    assert [(e.priority, e.locality.zone, e.locality.sub_zone) for e in cla.endpoints] == [
        (0, ZONE, "rack=r1"), (0, ZONE, ""), (1, "west", ""), (2, "east", "")]


def test_pieces_are_shared_across_proxies_through_the_cache() -> None:
    cache = PieceCache()
    first = generate(context(scenario("http")), cache)
    other = Scenario("other", WEB_HTTP.replace("web-1", "web-2").replace("10.0.0.1", "10.0.0.8"))
    second = generate(context(other), cache)
    assert second.clusters["backend"] is first.clusters["backend"]
    assert second.endpoints["backend"] is first.endpoints["backend"]
    assert second.listeners["outbound:127.0.0.1:20001"] is not first.listeners[
        "outbound:127.0.0.1:20001"]
    timed = generate(context(scenario("timeout")), cache)
    assert timed.clusters["backend"] is not first.clusters["backend"]
    assert timed.endpoints["backend"] is first.endpoints["backend"]


def test_cluster_inputs_hash_even_with_list_fields() -> None:
    ctx = context(scenario("health-check"))
    confs = ClusterConfs.of(ctx.policies, "backend")
    again = ClusterConfs.of(context(scenario("health-check")).policies, "backend")
    assert hash(confs) == hash(again) and confs == again
    assert confs != ClusterConfs()
    destination = Destination(MESH, "backend", "http")
    assert {(destination, confs): 1}[(destination, again)] == 1
    assert outbound_cluster(destination, confs) == outbound_cluster(destination, again)
    assert hash(Locality.of(None, {}, ZONE)) == hash(Locality())


def test_endpoint_change_changes_only_that_service() -> None:
    cache = PieceCache()
    base = context(scenario("retry"))
    first = generate(base, cache)
    backend = SERVICES["backend"]
    moved = Service(backend.name, backend.protocol, backend.endpoints[:1], backend.remote)
    changed = ProxyContext(**{**base.__dict__, "services": {**SERVICES, "backend": moved}})
    second = generate(changed, cache)
    differs = {n for n in first.endpoints if first.endpoints[n] is not second.endpoints[n]}
    assert differs == {"backend"}
    assert all(first.clusters[n] is second.clusters[n] for n in first.clusters
               if n in ("backend", "payments", "db"))


def test_every_ingress_of_a_zone_shares_its_locality() -> None:
    service = Service("svc", "http", remote=(
        RemoteZone("east", "192.168.1.11", 10001, instances=4),
        RemoteZone("east", "192.168.1.10", 10001, instances=4),
        RemoteZone("west", "192.168.2.10", 10001, instances=4)))
    cla = endpoints("svc", Hosts.of(service), ZONE)
    by_zone = {loc.locality.zone: loc for loc in cla.endpoints}
    assert sorted(by_zone) == ["east", "west"]
    east, west = by_zone["east"], by_zone["west"]
    assert [e.endpoint.address.socket_address.address for e in east.lb_endpoints] == [
        "192.168.1.10", "192.168.1.11"]
    # Both zones have 4 instances: the same locality weight, and east's two ingresses
    # split it, so east gets no more than west for having two.
    assert east.load_balancing_weight.value == west.load_balancing_weight.value == 4
    assert [e.load_balancing_weight.value for e in east.lb_endpoints] == [2, 2]
    assert [e.load_balancing_weight.value for e in west.lb_endpoints] == [4]


def test_hostnames_never_reach_eds() -> None:
    service = Service("svc", "http", endpoints=(Endpoint("10.0.0.2", 80), Endpoint("host.lan", 80)),
                      remote=(RemoteZone("east", "ingress.example.com", 10001),
                              RemoteZone("west", "192.168.2.10", 10001)))
    cla = endpoints("svc", Hosts.of(service), ZONE)
    addresses = [e.endpoint.address.socket_address.address
                 for loc in cla.endpoints for e in loc.lb_endpoints]
    assert addresses == ["10.0.0.2", "192.168.2.10"]



def _pinned(zone: str, route_scenario: str = "http") -> ProxyContext:
    """The scenario's context with VIP outbounds to backend and db (any zone) and to
    backend and db pinned to ``zone``."""
    ctx = context(scenario(route_scenario))
    vips = (OutboundListener("backend", 80, "240.0.0.1"),
            OutboundListener("backend", 80, "240.0.0.2", zone=zone),
            OutboundListener("db", 5432, "240.0.0.3", zone=zone))
    return dataclasses.replace(ctx, outbounds=ctx.outbounds + vips)


def test_a_zone_pinned_name_sends_to_that_zones_ingress_only() -> None:
    ctx = _pinned("east")
    out = generate(ctx)
    cla = out.endpoints["backend__zeast"]
    assert [(e.priority, e.locality.zone, [lb.endpoint.address.socket_address.address
                                            for lb in e.lb_endpoints])
            for e in cla.endpoints] == [(0, "east", ["192.168.1.10"])]
    route = out.routes["outbound:backend__zeast"]
    assert [r.route.cluster for vh in route.virtual_hosts for r in vh.routes] == [
        "backend__zeast"]
    listener = out.listeners["outbound:240.0.0.2:80"]
    assert 'outbound:backend__zeast' in str(listener)
    # The cluster is backend's (same TLS identity and SNI), only its endpoints differ.
    assert out.clusters["backend__zeast"].transport_socket == out.clusters[
        "backend"].transport_socket
    assert [e.locality.zone for e in out.endpoints["backend"].endpoints] == [
        ZONE, "east", "west"]
    tcp = out.listeners["outbound:240.0.0.3:5432"]
    assert "db__zeast" in str(tcp) and [e.locality.zone for e in out.endpoints[
        "db__zeast"].endpoints] == ["east"]


def test_a_name_pinned_to_the_proxys_own_zone_keeps_its_local_instances_only() -> None:
    ctx = _pinned(ZONE)
    out = generate(ctx)
    cla = out.endpoints[f"backend__z{ZONE}"]
    assert {e.locality.zone for e in cla.endpoints} == {ZONE}
    assert sorted(lb.endpoint.address.socket_address.address
                  for e in cla.endpoints for lb in e.lb_endpoints) == [
        "10.0.0.2", "10.0.0.3", "10.0.0.4"]


def test_a_pinned_name_ignores_routes_that_would_send_elsewhere() -> None:
    # The http-route scenario splits backend's traffic to backend-canary by MeshHTTPRoute;
    # the pinned name's route sends everything to backend in east.
    ctx = _pinned("east", "http-route")
    out = generate(ctx)
    assert "backend-canary" in str(out.routes["outbound:backend"])
    pinned = out.routes["outbound:backend__zeast"]
    assert {r.route.cluster for vh in pinned.virtual_hosts for r in vh.routes} == {
        "backend__zeast"}


def test_hosts_are_kept_per_service_object_and_follow_a_new_one() -> None:
    cache = PieceCache()
    service = SERVICES["backend"]
    made = cache.hosts(service, (), lambda: Hosts.of(service))
    assert made == Hosts.of(service)
    assert cache.hosts(service, (), lambda: Hosts.of(service)) is made
    subset = (("version", "v1"),)
    assert cache.hosts(service, subset, lambda: Hosts.of(service, subset)) == Hosts.of(
        service, subset) != made
    # The next state generation's service, with one more endpoint: new hosts.
    grown = dataclasses.replace(service, endpoints=(
        *service.endpoints, Endpoint("10.0.9.9", 8080, {"version": "v3"})))
    again = cache.hosts(grown, (), lambda: Hosts.of(grown))
    assert again == Hosts.of(grown) != made
    # Generated through the cache or without it: the same bytes.
    ctx = dataclasses.replace(context(scenario("http")),
                              services={**SERVICES, "backend": grown})
    with_cache, plain = generate(ctx, cache), generate(ctx)
    assert {n: m.SerializeToString() for n, m in with_cache.endpoints.items()} == {
        n: m.SerializeToString() for n, m in plain.endpoints.items()}


def test_hosts_memo_holds_one_object_per_service_not_every_generation() -> None:
    cache = PieceCache()
    service = SERVICES["backend"]
    generations = []
    for i in range(50):  # a registration each: a new Service object per generation
        service = dataclasses.replace(service, endpoints=(
            *service.endpoints, Endpoint(f"10.0.8.{i}", 8080, {"version": "v1"})))
        generations.append(weakref.ref(service))
        assert cache.hosts(service, (), lambda s=service: Hosts.of(s)) == Hosts.of(service)
    gc.collect()
    assert [ref() is None for ref in generations[:-1]] == [True] * 49
    assert cache.hosts(service, (), lambda: Hosts()) == Hosts.of(service)  # kept


def test_hosts_hash_is_kept_and_equal_for_equal_hosts() -> None:
    a, b = _hosts("backend"), _hosts("backend")
    assert a is not b and a == b and hash(a) == hash(b) == hash(a)
    assert {a: 1}[b] == 1
    other = _hosts("payments")
    assert other != a and {a: 1}.get(other) is None
