"""Policy matching and merging (gossamer.policy), Hypothesis properties: the result does not
depend on input order, the most specific set field wins, merging is idempotent, the
effective conf is a fixed point, and the first matching ``from`` rule is the merge of all
matching items.
"""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gossamer.model.base import Resource
from gossamer.model.meshtimeout import MeshTimeoutConf
from gossamer.policy import PolicyRef, match_policies, merge_confs
from gossamer.policy.merge import conf_data
from tests.unit.policy_matching_kinds import MESH, SVC, dataplane, outbound, policy, svc, to_

# (top-level targetRef, selects web-1 whose one inbound is {service: web, version: v1})
TOP_REFS = [
    (MESH, True),
    ({"kind": "MeshSubset", "tags": {"version": "v1"}}, True),
    ({"kind": "MeshSubset", "tags": {"version": "v2"}}, False),
    (svc("web"), True),
    (svc("payments"), False),
    ({"kind": "MeshServiceSubset", "name": "web", "tags": {"version": "v1"}}, True),
    ({"kind": "Dataplane", "name": "web-1"}, True),
    ({"kind": "Dataplane", "name": "web-2"}, False),
    ({"kind": "Dataplane", "name": "web-1", "tags": {"version": "v1"}}, True),
    ({"kind": "Dataplane", "name": "web-1", "tags": {"version": "v2"}}, False),
]


SPECIFICITY = {"Mesh": 0, "MeshSubset": 1, "MeshService": 2, "MeshServiceSubset": 3,
               "Dataplane": 4}


TO_REFS = [(MESH, True), (svc("backend"), True), (svc("db"), False)]


FIELDS = [("connectionTimeout",), ("idleTimeout",), ("http", "requestTimeout"),
          ("http", "streamIdleTimeout")]


NAMES = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf"]


ORIGINS = [None, "global", "zone"]


def _set(data: dict[str, Any], path: tuple[str, ...], value: str) -> None:
    for key in path[:-1]:
        data = data.setdefault(key, {})
    data[path[-1]] = value


def _get(data: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        data = data.get(key) or {}
    return data or None


@st.composite
def policy_sets(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Abstract MeshTimeout policies; each set field's value is unique to its item."""
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=6, unique=True))
    out = []
    for pi, name in enumerate(names):
        items = []
        for ii in range(draw(st.integers(1, 3))):
            to_index = draw(st.integers(0, len(TO_REFS) - 1))
            fields = draw(st.lists(st.integers(0, len(FIELDS) - 1), unique=True))
            default: dict[str, Any] = {}
            for fi in fields:
                _set(default, FIELDS[fi], f"{pi * 100 + ii * 10 + fi + 1}s")
            items.append({"to": to_index, "default": default, "index": ii})
        out.append({"name": name, "top": draw(st.integers(0, len(TOP_REFS) - 1)),
                    "origin": draw(st.sampled_from(ORIGINS)), "items": items})
    return out


def _resource(p: dict[str, Any]) -> Resource:
    return policy(p["name"], TOP_REFS[p["top"]][0], origin=p["origin"],
                  to=[to_(TO_REFS[it["to"]][0], **it["default"]) for it in p["items"]])


@settings(max_examples=200, deadline=None)
@given(policy_sets(), st.randoms(use_true_random=False))
def test_property_result_is_independent_of_input_order(
        abstract: list[dict[str, Any]], rnd: random.Random) -> None:
    resources = [_resource(p) for p in abstract]
    shuffled = list(resources)
    rnd.shuffle(shuffled)
    expected = match_policies(dataplane(), resources, destinations=["backend", "db"])
    assert match_policies(dataplane(), shuffled, destinations=["backend", "db"]) == expected
    assert match_policies(dataplane(), list(reversed(resources)),
                          destinations=["backend", "db"]) == expected


@settings(max_examples=300, deadline=None)
@given(policy_sets())
def test_property_most_specific_set_field_wins(abstract: list[dict[str, Any]]) -> None:
    # The rule, stated directly: among the items that reach backend and set a field, the
    # value comes from the one with the highest (to-specificity, top-specificity, origin,
    # name, position) -- independent of how the implementation sorts and folds.
    result = outbound([_resource(p) for p in abstract])
    for path in FIELDS:
        candidates = []
        for p in abstract:
            top, selects = TOP_REFS[p["top"]]
            if not selects:
                continue
            for it in p["items"]:
                to_ref, reaches = TO_REFS[it["to"]]
                value = _get(it["default"], path)
                if reaches and value is not None:
                    rank = (SPECIFICITY[to_ref["kind"]], SPECIFICITY[top["kind"]],
                            p["origin"] != "global", p["name"], it["index"])
                    candidates.append((rank, value))
        expected = max(candidates)[1] if candidates else None
        assert _get(result, path) == expected, path


durations = st.sampled_from(["1s", "2s", "5m", "250ms"])


timeout_confs = st.fixed_dictionaries({}, optional={
    "connectionTimeout": durations, "idleTimeout": durations,
    "http": st.fixed_dictionaries({}, optional={"requestTimeout": durations,
                                                "maxStreamDuration": durations})})


@settings(max_examples=200, deadline=None)
@given(timeout_confs, timeout_confs)
def test_property_merge_is_idempotent(a_data: dict[str, Any], b_data: dict[str, Any]) -> None:
    a, b = (MeshTimeoutConf.model_validate(d) for d in (a_data, b_data))
    ref_a, ref_b = PolicyRef("MeshTimeout", "a"), PolicyRef("MeshTimeout", "b")
    # x merged with itself is x, field for field
    assert conf_data(merge_confs([(ref_a, a), (ref_a, a)]).model(MeshTimeoutConf)) == a_data
    ab = merge_confs([(ref_a, a), (ref_b, b)]).model(MeshTimeoutConf)
    # applying b again changes nothing, and a merged result re-merges to itself
    assert merge_confs([(ref_a, a), (ref_b, b), (ref_b, b)]).conf == ab
    assert conf_data(merge_confs([(ref_a, ab)]).model(MeshTimeoutConf)) == conf_data(ab)
    # every field b sets is b's; every other field is a's
    merged = conf_data(ab)
    for path in [("connectionTimeout",), ("idleTimeout",), ("http", "requestTimeout"),
                 ("http", "maxStreamDuration")]:
        assert _get(merged, path) == (_get(b_data, path) or _get(a_data, path))


@settings(max_examples=150, deadline=None)
@given(policy_sets())
def test_property_effective_conf_is_a_fixed_point(abstract: list[dict[str, Any]]) -> None:
    # Adding the effective conf back as the most specific policy changes nothing.
    resources = [_resource(p) for p in abstract]
    effective = outbound(resources)
    pinned = policy("zz-pinned", {"kind": "Dataplane", "name": "web-1"}, origin="zone",
                    to=[to_(svc("backend"), **effective)]) if effective else None
    assert outbound(resources + ([pinned] if pinned else [])) == effective


SOURCE_REFS = [MESH, svc("frontend"), svc("other"), {"kind": "MeshSubset", "tags": {"env": "prod"}},
               {"kind": "MeshSubset", "tags": {"env": "dev"}},
               {"kind": "MeshServiceSubset", "name": "frontend", "tags": {"env": "prod"}}]


SOURCES = [{SVC: s, **({"env": e} if e else {})}
           for s in ("frontend", "other", "batch") for e in ("prod", "dev", None)]


FROM_FIELDS = ["idleTimeout", "connectionTimeout"]


# (name, top-level targetRef index, [(source targetRef index, [field indexes])])
from_policy_sets = st.lists(
    st.tuples(st.sampled_from(NAMES), st.integers(0, len(TOP_REFS) - 1),
              st.lists(st.tuples(st.integers(0, len(SOURCE_REFS) - 1),
                                 st.lists(st.integers(0, 1), unique=True)),
                       min_size=1, max_size=3)),
    min_size=1, max_size=5, unique_by=lambda t: t[0])


def _from_value(pi: int, ii: int, fi: int) -> str:
    return f"{pi * 100 + ii * 10 + fi + 1}s"


def _expected_for_source(abstract: list[Any], source: dict[str, str]) -> dict[str, Any]:
    """The most specific matching item's value for each field, found by brute force."""
    candidates: dict[str, list[Any]] = {}
    for pi, (name, top, items) in enumerate(abstract):
        top_ref, selects = TOP_REFS[top]
        for ii, (src, fs) in enumerate(items):
            ref = SOURCE_REFS[src]
            want = {**({SVC: ref["name"]} if "name" in ref else {}), **ref.get("tags", {})}
            if not selects or any(source.get(k) != v for k, v in want.items()):
                continue
            rank = (SPECIFICITY[ref["kind"]], SPECIFICITY[top_ref["kind"]], name, ii)
            for fi in fs:
                candidates.setdefault(FROM_FIELDS[fi], []).append((rank, _from_value(pi, ii, fi)))
    return {field: max(values)[1] for field, values in candidates.items()}


@settings(max_examples=200, deadline=None)
@given(from_policy_sets)
def test_property_first_matching_from_rule_is_the_merge_of_all_matching_items(
        abstract: list[Any]) -> None:
    resources = [policy(name, TOP_REFS[top][0], from_=[
        to_(SOURCE_REFS[src], **{FROM_FIELDS[fi]: _from_value(pi, ii, fi) for fi in fs})
        for ii, (src, fs) in enumerate(items)]) for pi, (name, top, items) in enumerate(abstract)]
    web = match_policies(dataplane(), resources).kind("MeshTimeout").inbound(8080)
    for source in SOURCES:
        merged = web.for_source(source)
        got = {} if merged is None else conf_data(merged.model(MeshTimeoutConf))
        assert got == _expected_for_source(abstract, source), source

