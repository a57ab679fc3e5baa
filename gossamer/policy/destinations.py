"""Which services a proxy's outbound traffic can reach, for matching only those.

A proxy sends to its outbounds and, through the routes on them (``MeshHTTPRoute``,
``MeshTCPRoute``: ``backendRefs`` and ``RequestMirror`` backends), to other services; the
generator builds a cluster for each of those from the backend's own ``to[]`` confs. So a
proxy needs the confs of its outbounds and of their route backends, not of every service
of the mesh.

``RouteBackends.of(policies, mesh)`` indexes, once per change of the policies, every
``backendRef`` found in a ``to[]`` item by the destination the item targets;
``reachable(outbounds)`` is then the outbounds plus every backend a route on one of them
names. It is a superset of what the matched routes send to (it does not check which
proxies a route selects, nor which route wins), which is all the caller needs: a conf
computed for one service more is the same conf, and a missing one would be wrong.

One level is enough: the generator follows a route from an outbound to its backends'
clusters, never a backend's own routes (those apply only where the backend is an
outbound itself).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from pydantic import BaseModel

from gossamer.model.base import Resource
from gossamer.model.policy_fields import BackendRef
from gossamer.policy.selectors import ALL_DESTINATIONS, destination_key, top_target_ref


@dataclass(frozen=True)
class RouteBackends:
    """Backend services by the destination a ``to[]`` item targets (``ALL_DESTINATIONS``
    for items that target every destination)."""

    by_destination: Mapping[str, frozenset[str]]

    @classmethod
    def of(cls, policies: Iterable[Resource], mesh: str) -> RouteBackends:
        found: dict[str, set[str]] = defaultdict(set)
        for policy in policies:
            if policy.mesh != mesh or top_target_ref(policy) is None:
                continue
            for item in getattr(policy.spec, "to", None) or []:
                names = {ref.name for ref in _backend_refs(item)}
                key = destination_key(item.target_ref, mesh)
                if names and key is not None:
                    found[key] |= names
        return cls(MappingProxyType({k: frozenset(v) for k, v in found.items()}))

    def reachable(self, outbounds: Iterable[str]) -> frozenset[str]:
        """``outbounds`` and every service a route on one of them may send to."""
        services = set(outbounds)
        everywhere = self.by_destination.get(ALL_DESTINATIONS, frozenset())
        return frozenset(services.union(everywhere, *(
            self.by_destination.get(s, frozenset()) for s in services)))


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
