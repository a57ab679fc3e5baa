"""``PolicyIndex`` against a full match, Hypothesis: for random meshes (services, tags,
zones, Dataplanes with and without inbounds, outbounds, names, a second mesh) and random
policy sets of every targetRef kind and mixed kinds (``to[]``, ``from[]``, ``rules[]``,
routes, default-only; other meshes; zone-origin from other zones), matching a proxy
against its candidates gives the same ``ProxyPolicies`` as matching it against every
policy, and the same Envoy resources byte for byte; and two proxies with the same
candidate identity, inbounds and outbounds get the same match but for their name (the
promise ``Candidates`` documents for sharing matches).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

from hypothesis import given, settings
from hypothesis import strategies as st

from gossamer.model.base import Resource
from gossamer.model.meshexternalservice import destination_key
from gossamer.model.registry import parse_document
from gossamer.policy import (
    PolicyIndex,
    ProxyView,
    RouteBackends,
    match_key,
    match_policies,
    policy_order,
)
from gossamer.policy.errors import PolicyMatchingError
from proxy.context import Endpoint, OutboundListener, ProxyContext, Service
from proxy.envoy import generate
from tests.builders import dataplane

T = TypeVar("T")
SVC, PROTO, ZONE_TAG = "gossamer.io/service", "gossamer.io/protocol", "gossamer.io/zone"
SERVICES = ["web", "api", "db"]
EXTERNALS = ["httpbin", "db"]  # "db" also names a service: the keys must keep them apart
# A proxy reaches external services by their VIP outbounds (zone_cp.mesh_dns), not by its
# Dataplane's: every proxy here may call both.
EXTERNAL_KEYS = frozenset(destination_key(name) for name in EXTERNALS)
ZONES = ["east", "west"]
MESHES = ["default", "default", "default", "other"]  # mostly the mesh under test
DP_NAMES = [f"dp-{i}" for i in range(4)]
USER_TAGS = {"version": ["v1", "v2"], "env": ["prod", "dev"]}
DURATIONS = ["1s", "2s", "5m", "250ms"]

SUBSETS = [{}, {ZONE_TAG: "east"}, {ZONE_TAG: "west"}, {SVC: "web"}, {"version": "v1"}]
mesh_refs = st.sampled_from([None, None, None, "default", "other"])


def user_tags(extra: bool = False) -> st.SearchStrategy[dict[str, str]]:
    """Some of version/env; with ``extra``, also reserved tags a selector may name."""
    options = {k: st.sampled_from(v) for k, v in USER_TAGS.items()}
    if extra:
        options.update({SVC: st.sampled_from(SERVICES), ZONE_TAG: st.sampled_from(ZONES),
                        PROTO: st.sampled_from(["http", "tcp"])})
    return st.fixed_dictionaries({}, optional=options)


@st.composite
def top_refs(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["Mesh", "MeshSubset", "MeshService", "MeshServiceSubset",
                                 "Dataplane"]))
    ref: dict[str, Any] = {"kind": kind}
    if kind == "MeshSubset":  # often one tag alone (the zone's: proxies with no inbounds)
        ref["tags"] = draw(st.one_of(st.sampled_from(SUBSETS), user_tags(extra=True)))
    elif kind in ("MeshService", "MeshServiceSubset"):
        ref["name"] = draw(st.sampled_from(SERVICES))
    elif kind == "Dataplane":
        ref["name"] = draw(st.sampled_from(DP_NAMES))
    if kind in ("MeshServiceSubset", "Dataplane") and (tags := draw(user_tags())):
        ref["tags"] = tags
    if mesh := draw(mesh_refs):
        ref["mesh"] = mesh
    return ref


@st.composite
def dest_refs(draw: st.DrawFn, route: bool = False, external: bool = False
              ) -> dict[str, Any]:
    ref: dict[str, Any] = {"kind": "MeshService", "name": draw(st.sampled_from(SERVICES))}
    if not route and draw(st.booleans()):
        ref = {"kind": "Mesh"}
    elif external and draw(st.booleans()):
        ref = {"kind": "MeshExternalService", "name": draw(st.sampled_from(EXTERNALS))}
    if mesh := draw(mesh_refs):
        ref["mesh"] = mesh
    return ref


@st.composite
def source_refs(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["Mesh", "MeshSubset", "MeshService", "MeshServiceSubset"]))
    ref: dict[str, Any] = {"kind": kind}
    if kind in ("MeshService", "MeshServiceSubset"):
        ref["name"] = draw(st.sampled_from(SERVICES))
    if kind in ("MeshSubset", "MeshServiceSubset"):
        ref["tags"] = draw(user_tags())
    return ref


def items(draw: st.DrawFn, ref: st.SearchStrategy[dict[str, Any]],
          conf: st.SearchStrategy[Any], lo: int = 0, hi: int = 2) -> list[dict[str, Any]]:
    return [{"targetRef": draw(ref), "default": draw(conf)}
            for _ in range(draw(st.integers(lo, hi)))]


def route_to(draw: st.DrawFn, http: bool) -> list[dict[str, Any]]:
    backends = [{"kind": "MeshService", "name": draw(st.sampled_from(SERVICES)),
                 "weight": draw(st.integers(1, 3))} for _ in range(draw(st.integers(1, 2)))]
    rule: dict[str, Any] = {"default": {"backendRefs": backends}}
    if http:
        rule["matches"] = [{"path": {"type": "PathPrefix",
                                     "value": draw(st.sampled_from(["/a", "/b"]))}}]
    return [{"targetRef": draw(dest_refs(route=True)), "rules": [rule]}]


timeouts = st.builds(lambda d: {"connectionTimeout": d}, st.sampled_from(DURATIONS))
idles = st.builds(lambda d: {"idleTimeout": d}, st.sampled_from(DURATIONS))
actions = st.builds(lambda a: {"action": a}, st.sampled_from(["Allow", "Deny"]))


def sections(draw: st.DrawFn, kind: str) -> dict[str, Any]:
    """The spec of one policy of ``kind`` beside its targetRef (never empty)."""
    if kind == "MeshTimeout":
        spec = {"to": items(draw, dest_refs(external=True), timeouts),
                "from": items(draw, source_refs(), idles),
                "rules": [{"default": draw(idles)}] if draw(st.booleans()) else []}
        if not any(spec.values()):
            spec["rules"] = [{"default": draw(idles)}]
        return {k: v for k, v in spec.items() if v}
    if kind == "MeshTrafficPermission":
        return {"from": items(draw, source_refs(), actions, lo=1)}
    if kind == "MeshRetry":
        return {"to": items(draw, dest_refs(external=True), st.builds(
            lambda n: {"tcp": {"maxConnectAttempt": n}}, st.integers(1, 4)), lo=1)}
    if kind == "MeshCircuitBreaker":
        return {"to": items(draw, dest_refs(external=True), st.builds(
            lambda n: {"connectionLimits": {"maxConnections": n}}, st.integers(1, 9)), lo=1)}
    if kind in ("MeshHTTPRoute", "MeshTCPRoute"):
        return {"to": route_to(draw, kind == "MeshHTTPRoute")}
    assert kind == "MeshTrace"
    return {"default": {"sampling": {"overall": draw(st.integers(0, 100))}}}


KINDS = ["MeshTimeout", "MeshTrafficPermission", "MeshRetry", "MeshCircuitBreaker",
         "MeshHTTPRoute", "MeshTCPRoute", "MeshTrace"]


@st.composite
def policies(draw: st.DrawFn) -> list[Resource]:
    out = []
    for i in range(draw(st.integers(0, 14))):
        kind = draw(st.sampled_from(KINDS))
        origin = draw(st.sampled_from([None, "global", "zone"]))
        zone = draw(st.sampled_from([None, *ZONES])) if origin else None
        labels = {k: v for k, v in (("gossamer.io/origin", origin),
                                    ("gossamer.io/zone", zone)) if v}
        out.append(parse_document({
            "type": kind, "name": f"p{i}", "mesh": draw(st.sampled_from(MESHES)),
            "labels": labels, "spec": {"targetRef": draw(top_refs()), **sections(draw, kind)}}))
    return sorted(out, key=policy_order)


@st.composite
def shapes(draw: st.DrawFn) -> dict[str, Any]:
    """What a Dataplane is besides its name: inbounds (maybe none), outbounds, mesh."""
    inbounds = [{"port": 8080 + i, "tags": {
        SVC: draw(st.sampled_from(SERVICES)), PROTO: draw(st.sampled_from(["http", "tcp"])),
        **draw(user_tags())}} for i in range(draw(st.integers(0, 2)))]
    outs = draw(st.lists(st.sampled_from(SERVICES), max_size=2, unique=True))
    return {"inbounds": inbounds, "mesh": draw(st.sampled_from(MESHES)),
            "outbounds": [{"port": 20000 + j, "tags": {SVC: s}} for j, s in enumerate(outs)]}


@st.composite
def fleets(draw: st.DrawFn) -> list[Resource]:
    """Dataplanes of a few shapes, so that several share one."""
    kinds = draw(st.lists(shapes(), min_size=1, max_size=3))
    names = draw(st.lists(st.sampled_from(DP_NAMES), min_size=1, max_size=5, unique=True))
    return [dataplane(name, address=f"10.0.0.{i + 1}",
                      **kinds[draw(st.integers(0, len(kinds) - 1))])
            for i, name in enumerate(names)]


def outcome(fn: Callable[[], T]) -> T | tuple[str, str]:
    """``fn()``, or the refusal it raises: both sides must refuse alike."""
    try:
        return fn()
    except PolicyMatchingError as exc:
        return (type(exc).__name__, str(exc))


def match(dp: Resource, found: list[Resource], zone: str | None,
          every: list[Resource], only: bool) -> Any:
    reachable = RouteBackends.of(every, dp.mesh).reachable(
        (*ProxyView.of(dp).outbound_services, *EXTERNAL_KEYS))
    return outcome(lambda: match_policies(dp, found, destinations=reachable, zone=zone,
                                          only_destinations=only, presorted=True))


zones = st.sampled_from([None, *ZONES])


@settings(max_examples=250, deadline=None)
@given(fleets(), policies(), zones, st.booleans())
def test_indexed_match_equals_the_full_match(fleet: list[Resource], every: list[Resource],
                                             zone: str | None, only: bool) -> None:
    index = PolicyIndex(every, zone=zone)
    for dp in fleet:
        found = index.candidates(ProxyView.of(dp, zone))
        assert match(dp, found, zone, every, only) == match(dp, every, zone, every, only)


@settings(max_examples=200, deadline=None)
@given(fleets(), policies(), zones, st.booleans())
def test_same_identity_and_shape_match_alike(fleet: list[Resource], every: list[Resource],
                                             zone: str | None, only: bool) -> None:
    index = PolicyIndex(every, zone=zone)
    seen: dict[Any, tuple[str, Any]] = {}
    for dp in fleet:
        view = ProxyView.of(dp, zone)
        key = match_key(view, index.select(view))
        result = match(dp, index.candidates(view), zone, every, only)
        if key in seen:
            name, other = seen[key]
            if isinstance(result, tuple):
                assert result == other
            else:
                assert dataclasses.replace(result, dataplane=name) == other
        else:
            seen[key] = (dp.name, result)


def services_of(fleet: list[Resource]) -> dict[str, Service]:
    """Every service of the pool, with the fleet's inbounds as its endpoints."""
    endpoints: dict[str, list[Endpoint]] = {s: [] for s in SERVICES}
    protocols = dict.fromkeys(SERVICES, "tcp")
    for dp in fleet:
        for ib in dp.spec.networking.inbound:  # type: ignore[attr-defined]
            service = ib.tags[SVC]
            protocols[service] = ib.tags.get(PROTO, "tcp")
            endpoints[service].append(Endpoint(dp.spec.networking.address,  # type: ignore[attr-defined]
                                               ib.port, dict(ib.tags)))
    return {s: Service(s, protocols[s], tuple(endpoints[s])) for s in SERVICES}


def resources(dp: Resource, fleet: list[Resource], policies: Any, zone: str | None) -> Any:
    if isinstance(policies, tuple):
        return policies  # matching refused: nothing to generate
    outbounds = tuple(OutboundListener(ob.service, ob.port)
                      for ob in dp.spec.networking.outbound)  # type: ignore[attr-defined]
    ctx = ProxyContext(mesh=dp.mesh, name=dp.name, zone=zone or "nowhere",
                       dataplane=dp.spec, policies=policies,  # type: ignore[arg-type]
                       outbounds=outbounds, services=services_of(fleet))
    return {type_url: {name: m.SerializeToString(deterministic=True) for name, m in ms.items()}
            for type_url, ms in generate(ctx).by_type().items()}


@settings(max_examples=80, deadline=None)
@given(fleets(), policies(), zones)
def test_indexed_match_generates_identical_envoy_resources(
        fleet: list[Resource], every: list[Resource], zone: str | None) -> None:
    index = PolicyIndex(every, zone=zone)
    mesh = [dp for dp in fleet if dp.mesh == "default"]
    for dp in mesh:
        found = index.candidates(ProxyView.of(dp, zone))
        indexed = resources(dp, mesh, match(dp, found, zone, every, True), zone)
        full = resources(dp, mesh, match(dp, every, zone, every, True), zone)
        assert indexed == full
