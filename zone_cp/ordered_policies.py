"""One mesh's policies, and what every proxy's lookup reads from them, kept as they change.

``MeshState`` hands every proxy's matching the mesh's policies that select it, in
``policy_order`` (``gossamer.policy.selectors``), whose key dumps the spec as canonical
JSON; and the services its outbounds' routes reach. Rebuilding either from a mesh of
20,000 policies after each change cost a hundred times the change itself (a sort, a
``PolicyIndex`` at 5.7 µs per policy, a walk of every policy for ``RouteBackends``), so
``MeshPolicies`` changes one policy in place in each structure:

- ``OrderedPolicies``: each policy with its sort key, sorted only when
  ``MeshState.policies`` asks (a dict write per change);
- ``PolicyIndex.ordered``: the index, its buckets sorted by the same key (a binary search
  in the policy's own bucket);
- ``RouteBackends``: backend mentions counted per destination (the policy's own items).

Each policy's sort key, ``order_key(p) = (policy_order(p), p.key)``, is computed once when
the policy is stored and shared by the list and the index: the store key breaks exact
ties, so the keys are unique and both give what a fresh sort gives.
"""

from __future__ import annotations

from collections.abc import Iterable
from operator import itemgetter
from typing import Any

from gossamer.model.base import Resource
from gossamer.policy import PolicyIndex, RouteBackends, policy_order

Key = tuple[str, str, str]
OrderKey = tuple[Any, Key]


def order_key(policy: Resource) -> OrderKey:
    """Where ``policy`` sorts among its mesh's policies (unique within a store)."""
    return (policy_order(policy), policy.key)


class OrderedPolicies:
    """Policies by store key, each with its ``order_key``; the sorted list is made when
    asked for and kept until the next change. Only ``MeshState.policies`` asks, never a
    proxy's lookup, so a change costs a dict write, not a list insert moving 20,000
    entries (a fifth of a whole update at that size, measured)."""

    def __init__(self, policies: Iterable[Resource] = ()) -> None:
        self._held: dict[Key, tuple[OrderKey, Resource]] = {
            p.key: (order_key(p), p) for p in policies}
        self._sorted: list[tuple[OrderKey, Resource]] | None = None

    def __len__(self) -> int:
        return len(self._held)

    def add(self, policy: Resource, sort_key: OrderKey | None = None) -> OrderKey:
        """Hold ``policy`` (replacing one of its store key) under ``sort_key``
        (``order_key(policy)`` unless given); returns the key."""
        if sort_key is None:
            sort_key = order_key(policy)
        self._held[policy.key] = (sort_key, policy)
        self._sorted = None
        return sort_key

    def discard(self, key: Key) -> None:
        """Remove the policy stored under ``key``, if any."""
        if self._held.pop(key, None) is not None:
            self._sorted = None

    def items(self) -> list[tuple[OrderKey, Resource]]:
        """``(order_key, policy)`` pairs, in order (a new list)."""
        if self._sorted is None:
            self._sorted = sorted(self._held.values(), key=itemgetter(0))
        return list(self._sorted)

    def resources(self) -> list[Resource]:
        """The policies in ``policy_order`` (the store key breaks exact ties)."""
        return [p for _, p in self.items()]


class MeshPolicies:
    """One mesh's policies as ``MeshState`` serves them to the zone's proxies: ``ordered``,
    ``index`` (for proxies of ``zone``) and ``routes``, changed together in place."""

    def __init__(self, mesh: str, zone: str | None, policies: Iterable[Resource] = ()) -> None:
        self.ordered = OrderedPolicies(policies)
        pairs = self.ordered.items()
        self.index = PolicyIndex.ordered(pairs, zone=zone)
        self.routes = RouteBackends.of((p for _, p in pairs), mesh)

    def put(self, policy: Resource) -> bool:
        """Store ``policy``, replacing one of its key; True when the routes' backends
        changed (what ``routes.reachable`` answers may differ)."""
        sort_key = self.ordered.add(policy)
        self.index.add(sort_key, policy)
        return self.routes.add(policy)

    def discard(self, key: Key) -> bool:
        """Forget the policy of ``key``; True when the routes' backends changed."""
        self.ordered.discard(key)
        self.index.discard(key)
        return self.routes.discard(key)
