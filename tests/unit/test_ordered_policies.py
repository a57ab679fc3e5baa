"""``OrderedPolicies`` keeps a mesh's policies in ``policy_order`` through any sequence of
adds and discards: the list always equals a fresh sort (Hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gossamer.model.base import Resource
from gossamer.model.registry import parse_document
from gossamer.policy import policy_order
from zone_cp.ordered_policies import OrderedPolicies

TARGETS = [{"kind": "Mesh"}, {"kind": "MeshService", "name": "web"},
           {"kind": "MeshSubset", "tags": {"version": "v2"}}]


def make(kind: str, name: str, target: int, seconds: int, origin: str | None) -> Resource:
    default = ({"connectionTimeout": f"{seconds}s"} if kind == "MeshTimeout"
               else {"connectionLimits": {"maxConnections": seconds}})
    doc = {"type": kind, "mesh": "default", "name": name,
           "spec": {"targetRef": TARGETS[target],
                    "to": [{"targetRef": {"kind": "Mesh"}, "default": default}]}}
    if origin:
        doc["labels"] = {"gossamer.io/origin": origin}
    return parse_document(doc)


POLICIES = st.builds(make, st.sampled_from(["MeshTimeout", "MeshCircuitBreaker"]),
                     st.sampled_from(["a", "b", "c", "d"]), st.integers(0, 2),
                     st.integers(1, 3), st.sampled_from([None, "global", "zone"]))
STEPS = st.lists(st.tuples(st.booleans(), POLICIES), max_size=30)


@settings(max_examples=150, deadline=None)
@given(st.lists(POLICIES, max_size=8), STEPS)
def test_the_list_always_equals_a_fresh_sort(initial: list[Resource],
                                            steps: list[tuple[bool, Resource]]) -> None:
    held = {p.key: p for p in initial}
    ordered = OrderedPolicies(held.values())
    for drop, policy in steps:
        ordered.discard(policy.key)
        held.pop(policy.key, None)
        if not drop:
            ordered.add(policy)
            held[policy.key] = policy
        expected = sorted(held.values(), key=lambda p: (policy_order(p), p.key))
        assert ordered.resources() == expected
        assert len(ordered) == len(held)
