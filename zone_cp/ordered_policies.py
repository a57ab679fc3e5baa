"""One mesh's policies kept in ``policy_order`` as they change.

``MeshState`` hands every proxy's matching the mesh's policies in ``policy_order``
(``gossamer.policy.selectors``), whose key dumps the spec as canonical JSON. Sorting a
mesh of 20,000 policies again after each change cost more than the change itself;
``OrderedPolicies`` computes each policy's key once, when it is stored, and keeps the
list sorted with a binary search per add or discard.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from typing import Any

from gossamer.model.base import Resource
from gossamer.policy import policy_order

Key = tuple[str, str, str]


class OrderedPolicies:
    def __init__(self, policies: Iterable[Resource] = ()) -> None:
        ordered = sorted(((policy_order(p), p.key, p) for p in policies),
                         key=lambda t: (t[0], t[1]))
        self._keys: list[tuple[Any, ...]] = [(k, key) for k, key, _ in ordered]
        self._policies: list[Resource] = [p for _, _, p in ordered]
        self._by_key: dict[Key, tuple[Any, ...]] = {key: (k, key) for k, key, _ in ordered}

    def __len__(self) -> int:
        return len(self._policies)

    def add(self, policy: Resource) -> None:
        """Insert ``policy`` (its key must not be held: ``discard`` it first)."""
        sort_key = (policy_order(policy), policy.key)
        at = bisect.bisect_right(self._keys, sort_key)
        self._keys.insert(at, sort_key)
        self._policies.insert(at, policy)
        self._by_key[policy.key] = sort_key

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
