"""Generation in two parts (proxy.envoy.generate, proxy.envoy.shapes): a shape shared by
proxies with equal ``shape_key`` and a per-proxy own part.

Checked on every generation scenario and on random variations of them (Hypothesis):
``combine(generate_shape, generate_own)`` is byte for byte what the generator built in
one pass before the split (``reference``, kept here as the oracle); contexts with equal
keys, built by varying anything at all but the caller's part of the contract (services
and policies), get byte-identical shapes; proxies that differ in their own fields share
the memoized shape's very messages; the own part reads no services or outbounds; and
changing anything the shape reads changes both the shape and the key, so a stale shape
cannot be reused.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gossamer.model.dataplane import DataplaneSpec
from gossamer.model.meshmetric import MeshMetricConf
from proxy.context import OutboundListener, ProxyContext
from proxy.envoy import confs
from proxy.envoy.cache import PieceCache
from proxy.envoy.generate import (
    combine,
    generate,
    generate_own,
    generate_shape,
    proxy_tracing,
)
from proxy.envoy.inbound import inbound_listener
from proxy.envoy.metrics import metrics_listeners
from proxy.envoy.outbound import outbound_listener
from proxy.envoy.resources import Builder, ProxyResources
from proxy.envoy.shapes import ShapeKey, shape_key
from proxy.envoy.transparent import (
    blackhole_cluster,
    inbound_capture,
    is_captured,
    outbound_capture,
    passthrough_cluster,
)
from tests.unit.envoy_inputs import WEB_ALL, Scenario
from tests.unit.envoy_scenarios import SCENARIOS, context

Edit = Callable[[dict[str, Any]], None]
CAPTURE = {"redirectPortOutbound": 15001, "redirectPortInbound": 15006}


def reference(ctx: ProxyContext, cache: PieceCache | None = None) -> ProxyResources:
    """``generate`` as it was before the split: one builder, in its old order."""
    out = Builder()
    trace, collector = proxy_tracing(ctx)
    if collector is not None:
        out.cluster(collector)
    for ib in ctx.dataplane.networking.inbound:
        inbound_listener(ctx, ib, trace, out)
    ports = ctx.dataplane.networking.transparent_proxying
    for ob in ctx.outbounds:
        if not (ports is not None and is_captured(ob)):
            outbound_listener(ctx, ob, trace, out, cache)
    if ports is not None:
        out.cluster(passthrough_cluster())
        out.cluster(blackhole_cluster())
        outbound_capture(ctx, ports, trace, out, cache)
        inbound_capture(ctx, ports, trace, out)
    metrics_listeners(ctx, confs.proxy(ctx.policies, confs.METRIC, MeshMetricConf), out)
    return out.freeze()


def wire(resources: ProxyResources) -> list[tuple[str, str, bytes]]:
    return [(t, n, m.SerializeToString(deterministic=True)) for t, n, m in resources.items()]


def edited(ctx: ProxyContext, edit: Edit, **changes: Any) -> ProxyContext:
    """``ctx`` with its Dataplane edited as a document (and re-validated), and other
    fields replaced; the same ``policies`` and ``services`` objects, as the caller
    shares them within a class."""
    doc = ctx.dataplane.model_dump(by_alias=True, exclude_none=True, mode="json")
    edit(doc)
    return dataclasses.replace(ctx, dataplane=DataplaneSpec.model_validate(doc), **changes)


def transparent(doc: dict[str, Any]) -> None:
    doc["networking"]["transparentProxying"] = dict(CAPTURE)


def base_contexts() -> list[ProxyContext]:
    """Every scenario, and every scenario again with the transparent proxy."""
    plain = [context(s) for s in SCENARIOS]
    return plain + [edited(c, transparent) for c in plain]


def _all_at_once() -> ProxyContext:
    """WEB_ALL with the policies of the scenarios whose confs the key must follow
    (affinity, tracing) and of those beside them (routes, logs, metrics, faults)."""
    chosen = ("load-balancing", "trace-otel", "access-log", "metric", "http-route",
              "fault-injection", "timeout")
    policies = dict.fromkeys(p for s in SCENARIOS if s.name in chosen for p in s.policies)
    return context(Scenario("all", WEB_ALL, policies=tuple(policies)))


BASES = base_contexts()
ALL_AT_ONCE = [_all_at_once(), edited(_all_at_once(), transparent)]


# -- own-field edits: never in the key ------------------------------------------------------

def _address(value: str) -> Edit:
    def edit(doc: dict[str, Any]) -> None:
        doc["networking"]["address"] = value
    return edit


def _inbound_address(value: str) -> Edit:
    def edit(doc: dict[str, Any]) -> None:
        for ib in doc["networking"]["inbound"][:1]:
            ib["address"] = value
    return edit


def _inbound_ports(shift: int) -> Edit:
    def edit(doc: dict[str, Any]) -> None:
        for ib in doc["networking"]["inbound"]:
            ib["port"] += shift
            ib["servicePort"] = ib.get("servicePort", 1000) + shift
    return edit


def _inbound_redirect(port: int) -> Edit:
    def edit(doc: dict[str, Any]) -> None:
        if "transparentProxying" in doc["networking"]:
            doc["networking"]["transparentProxying"]["redirectPortInbound"] = port
    return edit


def _tag(key: str, value: str) -> Edit:
    def edit(doc: dict[str, Any]) -> None:
        for ib in doc["networking"]["inbound"]:
            ib["tags"][key] = value
    return edit


# -- shape-field edits ----------------------------------------------------------------------

def _outbound_redirect(port: int) -> Edit:
    def edit(doc: dict[str, Any]) -> None:
        if "transparentProxying" in doc["networking"]:
            doc["networking"]["transparentProxying"]["redirectPortOutbound"] = port
    return edit


def _first_service(value: str) -> Edit:
    def edit(doc: dict[str, Any]) -> None:
        for ib in doc["networking"]["inbound"][:1]:
            ib["tags"]["gossamer.io/service"] = value
    return edit


def _no_transparent(doc: dict[str, Any]) -> None:
    doc["networking"].pop("transparentProxying", None)


EDITS: list[Edit] = [
    _address("10.1.2.3"), _address("10.9.9.9"), _address("web.example.internal"),
    _inbound_address("10.7.7.7"), _inbound_ports(7), _inbound_redirect(15007),
    _tag("version", "v9"), _tag("rack", "r2"), _tag("team", "ops"),
    _outbound_redirect(15011), _first_service("other"), _no_transparent, transparent,
]


def _outbounds(draw: st.DrawFn, ctx: ProxyContext) -> tuple[OutboundListener, ...]:
    obs = list(ctx.outbounds)
    choice = draw(st.sampled_from(["same", "drop", "port", "vip"]))
    if choice == "drop" and obs:
        obs.pop(draw(st.integers(0, len(obs) - 1)))
    elif choice == "port" and obs:
        i = draw(st.integers(0, len(obs) - 1))
        obs[i] = dataclasses.replace(obs[i], port=obs[i].port + 100)
    elif choice == "vip":
        obs.append(OutboundListener("backend", 80, "240.0.0.9"))
    return tuple(obs)


def _no_inbounds(doc: dict[str, Any]) -> None:
    doc["networking"]["inbound"] = []


EDITS.append(_no_inbounds)


@st.composite
def variant(draw: st.DrawFn, ctx: ProxyContext) -> ProxyContext:
    """``ctx`` with a few of its fields changed: own ones, and (less often) shape ones."""
    for edit in draw(st.lists(st.sampled_from(EDITS), max_size=2)):
        ctx = edited(ctx, edit)
    rarely = st.integers(0, 5).map(lambda n: n == 0)
    changes: dict[str, Any] = {
        "name": draw(st.sampled_from([ctx.name, "other-1", "web-2"])),
        "mtls_mode": draw(st.sampled_from(["strict", "permissive"])),
        "zone": "east" if draw(rarely) else ctx.zone,
        "passthrough": not ctx.passthrough if draw(rarely) else ctx.passthrough,
        "outbounds": _outbounds(draw, ctx) if draw(rarely) else ctx.outbounds,
    }
    return dataclasses.replace(ctx, **changes)


@st.composite
def pairs(draw: st.DrawFn) -> tuple[ProxyContext, ProxyContext]:
    """Two variants of one scenario that went through the same edits first, so that
    many pairs share a key and many differ in one field only."""
    common = draw(variant(draw(st.sampled_from(BASES) | st.sampled_from(ALL_AT_ONCE))))
    return draw(variant(common)), draw(variant(common))


# -- the tests ------------------------------------------------------------------------------

@pytest.mark.parametrize("ctx", BASES, ids=[f"{s.name}{t}" for t in ("", "+tp")
                                            for s in SCENARIOS])
def test_generate_is_the_one_pass_generator_byte_for_byte(ctx: ProxyContext) -> None:
    expected = wire(reference(ctx))
    assert wire(generate(ctx)) == expected
    assert wire(generate(ctx, PieceCache())) == expected
    assert wire(combine(generate_shape(ctx), generate_own(ctx))) == expected


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pairs())
def test_property_equal_keys_give_identical_shapes(pair: tuple[ProxyContext, ProxyContext]
                                                   ) -> None:
    a, b = pair
    for ctx in pair:
        own = wire(generate_own(ctx))
        assert wire(combine(generate_shape(ctx), generate_own(ctx))) == wire(reference(ctx))
        # The own part reads no destination: a proxy that takes a memoized shape has
        # read exactly the services the shape's builder read.
        assert wire(generate_own(dataclasses.replace(ctx, services={}, outbounds=()))) == own
    if shape_key(a) == shape_key(b):
        assert wire(generate_shape(a)) == wire(generate_shape(b))


SINGLE_CHANGES: list[Callable[[ProxyContext], ProxyContext]] = [
    *((lambda c, e=e: edited(c, e)) for e in EDITS),
    lambda c: dataclasses.replace(c, name="other-1"),
    lambda c: dataclasses.replace(c, mtls_mode="permissive"),
    lambda c: dataclasses.replace(c, zone="east"),
    lambda c: dataclasses.replace(c, passthrough=False),
    lambda c: dataclasses.replace(c, outbounds=c.outbounds[1:]),
    lambda c: dataclasses.replace(edited(c, _no_inbounds), name="job-7"),
]


@pytest.mark.parametrize("base", range(len(ALL_AT_ONCE)), ids=["plain", "tp"])
def test_every_single_change_keeps_the_key_or_the_shape(base: int) -> None:
    """Every change the property draws, one at a time, on the context every policy
    family applies to: an equal key means an identical shape."""
    ctx = ALL_AT_ONCE[base]
    shape = wire(generate_shape(ctx))
    for i, change in enumerate(SINGLE_CHANGES):
        changed = change(ctx)
        if shape_key(changed) == shape_key(ctx):
            assert wire(generate_shape(changed)) == shape, f"change {i}"


def test_own_fields_do_not_split_a_class() -> None:
    """Two instances of one service: other address, inbound address, name, inbound
    ports and version tag, mTLS mode; one key, one shape (the property above would hold
    vacuously if every key differed)."""
    first = edited(context(Scenario("tp", WEB_ALL)), transparent)
    second = edited(first, lambda d: [e(d) for e in (
        _address("10.0.0.42"), _inbound_address("10.0.0.43"), _inbound_ports(3),
        _inbound_redirect(15016), _tag("version", "v2"))],
        name="web-2", mtls_mode="permissive")
    assert shape_key(first) == shape_key(second)
    assert wire(generate_shape(first)) == wire(generate_shape(second))
    assert wire(generate_own(first)) != wire(generate_own(second))


def test_a_memoized_shape_is_shared_message_for_message() -> None:
    """What the zone CP does: one shape per key, combined with each proxy's own part."""
    cache = PieceCache()
    memo: dict[ShapeKey, ProxyResources] = {}
    first = context(Scenario("web", WEB_ALL))
    proxies = [edited(first, _address(f"10.0.1.{i}"), name=f"web-{i}") for i in range(1, 4)]
    combined = []
    for ctx in proxies:
        key = shape_key(ctx)
        if key not in memo:
            memo[key] = generate_shape(ctx, cache)
        combined.append(combine(memo[key], generate_own(ctx)))
    assert len(memo) == 1
    shape = next(iter(memo.values()))
    for ctx, resources in zip(proxies, combined, strict=True):
        assert wire(resources) == wire(reference(ctx))
        for name, message in shape.listeners.items():
            assert resources.listeners[name] is message
        for name, message in shape.routes.items():
            assert resources.routes[name] is message
    assert {n for r in combined for n in r.listeners if n.startswith("inbound:")} == {
        "inbound:10.0.1.1:18080", "inbound:10.0.1.2:18080", "inbound:10.0.1.3:18080"}


def _scenario(name: str, tp: bool = False) -> ProxyContext:
    ctx = context(next(s for s in SCENARIOS if s.name == name))
    return edited(ctx, transparent) if tp else ctx


SHAPE_CHANGES: list[tuple[str, ProxyContext, Callable[[ProxyContext], ProxyContext]]] = [
    ("outbound port", _scenario("http"), lambda c: dataclasses.replace(
        c, outbounds=(dataclasses.replace(c.outbounds[0], port=20099),))),
    ("outbound added", _scenario("http"), lambda c: dataclasses.replace(
        c, outbounds=(*c.outbounds, OutboundListener("db", 20002)))),
    ("outbound redirect port", _scenario("http", tp=True),
     lambda c: edited(c, _outbound_redirect(15011))),
    ("transparent proxy off", _scenario("http", tp=True), lambda c: edited(c, _no_transparent)),
    ("passthrough", _scenario("http", tp=True),
     lambda c: dataclasses.replace(c, passthrough=False)),
    ("zone", _scenario("load-balancing"), lambda c: dataclasses.replace(c, zone="west")),
    ("mesh", _scenario("http"), lambda c: dataclasses.replace(c, mesh="other")),
    ("traced service", _scenario("trace-otel"), lambda c: edited(c, _first_service("api"))),
    ("traced outbound-only name", _scenario("trace-otel"), lambda c: dataclasses.replace(
        edited(c, lambda d: d["networking"].update(inbound=[])), name="job-7")),
    ("affinity tag", _scenario("load-balancing"), lambda c: edited(c, _tag("rack", "r2"))),
]


@pytest.mark.parametrize(("what", "ctx", "change"), SHAPE_CHANGES,
                         ids=[w for w, _, _ in SHAPE_CHANGES])
def test_changing_what_the_shape_reads_changes_the_key(
        what: str, ctx: ProxyContext,
        change: Callable[[ProxyContext], ProxyContext]) -> None:
    changed = change(ctx)
    if what == "traced outbound-only name":
        ctx = dataclasses.replace(changed, name="job-6")
    assert wire(generate_shape(ctx)) != wire(generate_shape(changed)), "not read"
    assert shape_key(ctx) != shape_key(changed)


def test_untraced_outbound_only_proxies_share_whatever_their_names() -> None:
    ctx = edited(_scenario("http"), lambda d: d["networking"].update(inbound=[]))
    assert shape_key(ctx) == shape_key(dataclasses.replace(ctx, name="job-7"))


def test_tags_outside_affinity_do_not_split_a_class() -> None:
    ctx = _scenario("load-balancing")  # affinity on rack only
    assert shape_key(ctx).affinity == (("rack", "r1"),)
    assert shape_key(ctx) == shape_key(edited(ctx, _tag("version", "v2")))
