"""One mesh's policies, and what every proxy's lookup reads from them, kept as they change.

``MeshState`` hands every proxy's matching the mesh's policies that select it, in
``policy_order`` (``gossamer.policy.selectors``), whose key dumps the spec as canonical
JSON; and the services its outbounds' routes reach. Rebuilding either from a mesh of
20,000 policies after each change cost a hundred times the change itself (a sort, a
``PolicyIndex`` at 5.7 µs per policy, a walk of every policy for ``RouteBackends``), so
``MeshPolicies`` changes one policy in place in each structure:

- ``OrderedPolicies``: the policies in order, for ``MeshState.policies`` (a binary search
  and a list insert per change);
- ``PolicyIndex.ordered``: the index, its buckets sorted by the same key (a binary search
  in the policy's own bucket);
- ``RouteBackends``: backend mentions counted per destination (the policy's own items).

Each policy's sort key, ``order_key(p) = (policy_order(p), p.key)``, is computed once when
the policy is stored and shared by the list and the index: the store key breaks exact
ties, so the keys are unique and both give what a fresh sort gives.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from typing import Any

from gossamer.model.base import Resource
from gossamer.policy import PolicyIndex, RouteBackends, policy_order

Key = tuple[str, str, str]
OrderKey = tuple[Any, Key]


def order_key(policy: Resource) -> OrderKey:
    """Where ``policy`` sorts among its mesh's policies (unique within a store)."""
    return (policy_order(policy), policy.key)


class OrderedPolicies:
    """Policies sorted by ``order_key``, one per store key."""

    def __init__(self, policies: Iterable[Resource] = ()) -> None:
        ordered = sorted(((order_key(p), p) for p in policies), key=lambda t: t[0])
        self._keys: list[OrderKey] = [k for k, _ in ordered]
        self._policies: list[Resource] = [p for _, p in ordered]
        self._by_key: dict[Key, OrderKey] = {k[1]: k for k in self._keys}

    def __len__(self) -> int:
        return len(self._policies)

    def add(self, policy: Resource, sort_key: OrderKey | None = None) -> OrderKey:
        """Insert ``policy`` (its key must not be held: ``discard`` it first) under
        ``sort_key`` (``order_key(policy)`` unless given); returns the key."""
        if sort_key is None:
            sort_key = order_key(policy)
        at = bisect.bisect_right(self._keys, sort_key)
        self._keys.insert(at, sort_key)
        self._policies.insert(at, policy)
        self._by_key[policy.key] = sort_key
        return sort_key

    def discard(self, key: Key) -> None:
        """Remove the policy stored under ``key``, if any."""
        sort_key = self._by_key.pop(key, None)
        if sort_key is None:
            return
        at = bisect.bisect_left(self._keys, sort_key)
        del self._keys[at]
        del self._policies[at]

    def resources(self) -> list[Resource]:
        """The policies in ``policy_order`` (the store key breaks exact ties)."""
        return list(self._policies)

    def items(self) -> list[tuple[OrderKey, Resource]]:
        """``(order_key, policy)`` pairs, in order."""
        return list(zip(self._keys, self._policies, strict=True))


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
        self.ordered.discard(policy.key)
        sort_key = self.ordered.add(policy)
        self.index.add(sort_key, policy)
        return self.routes.add(policy)

    def discard(self, key: Key) -> bool:
        """Forget the policy of ``key``; True when the routes' backends changed."""
        self.ordered.discard(key)
        self.index.discard(key)
        return self.routes.discard(key)
