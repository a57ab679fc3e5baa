"""Which services a proxy's outbound traffic can reach, for matching only those.

A proxy sends to its outbounds and, through the routes on them (``MeshHTTPRoute``,
``MeshTCPRoute``: ``backendRefs`` and ``RequestMirror`` backends), to other services; the
generator builds a cluster for each of those from the backend's own ``to[]`` confs. So a
proxy needs the confs of its outbounds and of their route backends, not of every service
of the mesh.

``RouteBackends.of(policies, mesh)`` indexes every ``backendRef`` found in a ``to[]``
item by the destination the item targets; ``reachable(outbounds)`` is then the outbounds
plus every backend a route on one of them names. ``add`` and ``discard`` change one policy
in place: each destination counts its backends' mentions, and each policy remembers what
it added, so discarding a route removes only its own mentions and a change costs that
policy's items, not a walk of the mesh's policies.

It is a superset of what the matched routes send to (it does not check which
proxies a route selects, nor which route wins), which is all the caller needs: a conf
computed for one service more is the same conf, and a missing one would be wrong.

One level is enough: the generator follows a route from an outbound to its backends'
clusters, never a backend's own routes (those apply only where the backend is an
outbound itself).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType

from pydantic import BaseModel

from gossamer.model.base import Resource
from gossamer.model.policy_fields import BackendRef
from gossamer.policy.selectors import ALL_DESTINATIONS, destination_key, top_target_ref

StoreKey = tuple[str, str, str]  # Resource.key: (type, mesh, name)
# What one policy adds: (destination, backend service) once per mention.
_Mentions = tuple[tuple[str, str], ...]


class RouteBackends:
    """Backend services by the destination a ``to[]`` item targets (``ALL_DESTINATIONS``
    for items that target every destination), of the policies of one mesh; one policy per
    store key (type, mesh, name), as a store holds them."""

    def __init__(self, mesh: str) -> None:
        self.mesh = mesh
        self._counts: dict[str, Counter[str]] = {}
        self._held: dict[StoreKey, _Mentions] = {}

    @classmethod
    def of(cls, policies: Iterable[Resource], mesh: str) -> RouteBackends:
        found = cls(mesh)
        seen: set[StoreKey] = set()
        for policy in policies:
            if policy.key in seen:
                raise ValueError(f"{policy.type} {policy.name!r} of mesh {policy.mesh!r} "
                                 f"is given twice: one policy per name")
            seen.add(policy.key)
            found.add(policy)
        return found

    @property
    def by_destination(self) -> Mapping[str, frozenset[str]]:
        """The backends of each destination (a snapshot)."""
        return MappingProxyType({d: frozenset(c) for d, c in self._counts.items()})

    def add(self, policy: Resource) -> bool:
        """Take in ``policy``'s backends, replacing those of a held policy of its store
        key; True when ``reachable`` may answer differently."""
        changed = self.discard(policy.key)
        mentions = self._mentions(policy)
        if mentions:
            self._held[policy.key] = mentions
            for destination, backend in mentions:
                self._counts.setdefault(destination, Counter())[backend] += 1
        return changed or bool(mentions)

    def discard(self, key: StoreKey) -> bool:
        """Forget the backends of the policy held under ``key``; True when it had any."""
        mentions = self._held.pop(key, None)
        if mentions is None:
            return False
        for destination, backend in mentions:
            counts = self._counts[destination]
            counts[backend] -= 1
            if not counts[backend]:
                del counts[backend]
                if not counts:
                    del self._counts[destination]
        return True

    def reachable(self, outbounds: Iterable[str]) -> frozenset[str]:
        """``outbounds`` and every service a route on one of them may send to."""
        services = set(outbounds)
        found = set(services)
        for destination in (ALL_DESTINATIONS, *services):
            counts = self._counts.get(destination)
            if counts:
                found.update(counts)
        return frozenset(found)

    def _mentions(self, policy: Resource) -> _Mentions:
        if policy.mesh != self.mesh or top_target_ref(policy) is None:
            return ()
        out: list[tuple[str, str]] = []
        for item in getattr(policy.spec, "to", None) or []:
            key = destination_key(item.target_ref, self.mesh)
            if key is not None:
                out.extend((key, ref.name) for ref in _backend_refs(item))
        return tuple(out)


def _backend_refs(value: object) -> Iterator[BackendRef]:
    # Walks the whole item rather than naming today's fields (rules[].default.backendRefs,
    # filters[].requestMirror.backendRef), so a backend added to a route kind later is
    # not silently left out.
    if isinstance(value, BackendRef):
        yield value
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _backend_refs(getattr(value, name))
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _backend_refs(v)
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _backend_refs(v)
