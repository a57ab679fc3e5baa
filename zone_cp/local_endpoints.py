"""Each mesh's local endpoints by service, kept Dataplane by Dataplane.

``MeshState`` built a mesh's services from every Dataplane of the mesh after each
change: O(dataplanes) per registration, so a zone's connect phase was quadratic
(docs/benchmarks.md). ``LocalEndpoints`` holds, per mesh and service, each Dataplane's
part (its inbounds' endpoints of that service, and the protocol its first such inbound
names), and per service the application ports every Dataplane declares (other zones'
too: ``zone_cp.mesh_dns.declared_ports``). A Dataplane change replaces that Dataplane's
parts and returns the services they belong to, before and after, so that only those
are built again. ``service`` gives what the full build gave: the parts in Dataplane name
order (the order the state lists them in), endpoints sorted by address and port, the
protocol of the first Dataplane's inbound.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from gossamer.model.base import Resource
from gossamer.model.dataplane import DataplaneSpec
from gossamer.model.labels import PROTOCOL_TAG, ZONE_LABEL
from proxy.context import Endpoint


@dataclass(frozen=True)
class Part:
    """One Dataplane's endpoints of one service, and the protocol its first inbound of
    the service names."""

    endpoints: tuple[Endpoint, ...]
    protocol: str


class LocalEndpoints:
    def __init__(self, zone: str) -> None:
        self.zone = zone
        # mesh -> service -> Dataplane name -> its part (this zone's Dataplanes only)
        self._parts: dict[str, dict[str, dict[str, Part]]] = {}
        # mesh -> service -> port -> how many inbounds declare it (every zone's)
        self._ports: dict[str, dict[str, Counter[int]]] = {}

    def reset(self, dataplanes: list[Resource]) -> None:
        self._parts, self._ports = {}, {}
        for dp in dataplanes:
            self.update(None, dp)

    def update(self, old: Resource | None, new: Resource | None) -> frozenset[str]:
        """Replace ``old``'s parts by ``new``'s (either may be None: a Dataplane added or
        deleted); the names of the services either had an inbound of."""
        touched: set[str] = set()
        for dp, sign in ((old, -1), (new, 1)):
            if dp is None or not isinstance(dp.spec, DataplaneSpec):
                continue
            touched.update(self._count_ports(dp, sign))
            parts = _parts_of(dp) if dp.labels.get(ZONE_LABEL, self.zone) == self.zone else {}
            by_service = self._parts.setdefault(dp.mesh, {})
            for name in _services_of(dp):
                held = by_service.get(name)
                if sign < 0 and held is not None:
                    held.pop(dp.name, None)
                    if not held:
                        del by_service[name]
                elif sign > 0 and name in parts:
                    by_service.setdefault(name, {})[dp.name] = parts[name]
        return frozenset(touched)

    def _count_ports(self, dp: Resource, sign: int) -> set[str]:
        assert isinstance(dp.spec, DataplaneSpec)
        by_service = self._ports.setdefault(dp.mesh, {})
        names = set()
        for ib in dp.spec.networking.inbound:
            names.add(ib.service)
            counter = by_service.setdefault(ib.service, Counter())
            counter[ib.service_port or ib.port] += sign
            if counter[ib.service_port or ib.port] <= 0:
                del counter[ib.service_port or ib.port]
            if not counter:
                del by_service[ib.service]
        return names

    def names(self, mesh: str) -> list[str]:
        """The services with an endpoint in this zone."""
        return list(self._parts.get(mesh, {}))

    def service(self, mesh: str, name: str) -> tuple[tuple[Endpoint, ...], str | None]:
        """The service's endpoints here, sorted, and its protocol (None: no endpoints)."""
        held = self._parts.get(mesh, {}).get(name)
        if not held:
            return (), None
        parts = [held[n] for n in sorted(held)]
        endpoints = [e for p in parts for e in p.endpoints]
        return tuple(sorted(endpoints, key=_endpoint_order)), parts[0].protocol

    def declared_ports(self, mesh: str) -> dict[str, set[int]]:
        """Each service's application ports, as ``mesh_dns.declared_ports`` gives them
        from the mesh's Dataplanes."""
        return {name: set(ports) for name, ports in self._ports.get(mesh, {}).items()}


def _services_of(dp: Resource) -> set[str]:
    assert isinstance(dp.spec, DataplaneSpec)
    return {ib.service for ib in dp.spec.networking.inbound}


def _parts_of(dp: Resource) -> dict[str, Part]:
    spec = dp.spec
    assert isinstance(spec, DataplaneSpec)
    endpoints: dict[str, list[Endpoint]] = {}
    protocols: dict[str, str] = {}
    for ib in spec.networking.inbound:
        endpoints.setdefault(ib.service, []).append(
            Endpoint(
                address=ib.address or spec.networking.address,
                port=ib.port,
                tags=dict(ib.tags),
                service_port=ib.service_port or ib.port,
            )
        )
        protocols.setdefault(ib.service, ib.tags.get(PROTOCOL_TAG, "tcp"))
    return {name: Part(tuple(eps), protocols[name]) for name, eps in endpoints.items()}


def _endpoint_order(e: Endpoint) -> tuple[str, int]:
    return (e.address, e.port)
