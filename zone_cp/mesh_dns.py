"""What a mesh's VIPs mean to its sidecars: the DNS table and the VIP outbound listeners.

Pure over the ``MeshState`` (no I/O). Every ``VirtualIP`` of the mesh becomes a
``MeshVip``: ``<service>.mesh`` resolves to its address (``<service>.svc.<zone>.mesh``
for the VIP of a zone-pinned name, whose listeners send to that zone's instances only),
and a sidecar listens on it at port 80 plus every port the service has
(``proxy.envoy.ports``): the ``servicePort`` of its inbounds here, or the inbound port
when there is none — where the application listens, as in ``proxy.envoy.inbound`` —
and the ports other zones' ingresses list for it, so a service that runs only in
another zone is called on its own ports too. A MeshExternalService's VIP (its key
``extsvc@<name>``, ``zone_cp.external_services``) is ``<name>.extsvc.mesh`` with its
``match.port``, and 80 too when it speaks HTTP.

A VIP stays in the table and keeps its listeners until the allocator releases it, also
while its service is briefly gone (a restart): the name keeps resolving and the listener
keeps its connections, instead of flapping between NXDOMAIN and the same address.

VIP listeners are on by default: a call by name needs them. They bind addresses that
exist only where the VIP range is routed to ``lo`` (``ip route add local 240.0.0.0/4 dev
lo`` in the sidecar's network namespace; elsewhere Envoy refuses them), so a Dataplane
labelled ``gossamer.io/vip-outbounds: "false"`` gets none (it still gets the DNS table),
and an agent that finds the range not routed says how to route it and sets that label
(``proxy.agent.vip_route``).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from dns.errors import InvalidTable
from dns.table import normalise_name
from gossamer.model.base import Resource
from gossamer.model.dataplane import DataplaneSpec
from gossamer.model.labels import VIP_OUTBOUNDS_LABEL
from gossamer.model.meshexternalservice import HTTP_PROTOCOLS, name_of_key
from gossamer.model.virtualip import VirtualIPSpec, pinned_zone, service_of
from proxy.context import OutboundListener, Service
from proxy.envoy.ports import service_ports
from zone_cp.agent_wire import dns_table_message
from zone_cp.mesh_state import MeshState
from zone_cp.updates import DnsEntry, DnsTable

DEFAULT_PORT = 80
DOMAIN = "mesh"
EXTERNAL_SUBDOMAIN = "extsvc"  # <name>.extsvc.mesh: a MeshExternalService
# Envoy's words when a listener's address is not local: "cannot bind '240.0.0.5:80': ..."
_CANNOT_BIND = re.compile(r"cannot bind '\[?([0-9a-fA-F.:]+?)\]?:\d+'")


@dataclass(frozen=True)
class MeshVip:
    """A service's VIP and the ports its sidecars listen on there (ascending); ``zone``
    when the VIP is that of the zone-pinned name ``<service>.svc.<zone>.mesh``."""

    service: str
    address: str
    ports: tuple[int, ...] = (DEFAULT_PORT,)
    zone: str = ""


def declared_ports(dataplanes: Iterable[Resource]) -> dict[str, set[int]]:
    """Each service's application ports, from the inbounds of ``dataplanes``."""
    ports: dict[str, set[int]] = {}
    for dp in dataplanes:
        if isinstance(dp.spec, DataplaneSpec):
            for ib in dp.spec.networking.inbound:
                ports.setdefault(ib.service, set()).add(ib.service_port or ib.port)
    return ports


def known_ports(declared: dict[str, set[int]], services: Mapping[str, Service],
                memo: dict[str, tuple[Service, frozenset[int]]] | None = None
                ) -> dict[str, set[int]]:
    """Each service's ports: ``declared`` by the mesh's Dataplanes (``declared_ports``,
    changed in place) or by the instances and other zones' ingresses of ``services``
    (``MeshState.services``); an external service's: its ``match.port``, and 80 when it
    speaks HTTP. ``memo`` holds each service's own ports by the ``Service`` they came
    from: ``MeshState`` keeps the object of a service that did not change, so a change
    costs the ports of the services it changed, not of every endpoint in the mesh."""
    previous, memo = (memo or {}).copy(), memo if memo is not None else {}
    memo.clear()
    for name, service in services.items():
        held = previous.get(name)
        own = held[1] if held is not None and held[0] is service else _own_ports(service)
        memo[name] = (service, own)
        if service.external is not None:
            declared[name] = set(own)
        else:
            declared.setdefault(name, set()).update(own)
    return declared


def _own_ports(service: Service) -> frozenset[int]:
    if service.external is not None:
        return frozenset({service.external.port, *(
            (DEFAULT_PORT,) if service.protocol in HTTP_PROTOCOLS else ())})
    return frozenset(p.port for p in service_ports(service))


def mesh_vips(vips: Iterable[Resource], ports: Mapping[str, Iterable[int]]
              ) -> tuple[MeshVip, ...]:
    """One ``MeshVip`` per VirtualIP, in service order. Port 80 for every service; an
    external service has only the ports ``known_ports`` gives it (a tcp one has no 80)."""
    out = []
    for r in vips:
        if isinstance(r.spec, VirtualIPSpec):
            service = service_of(r)
            base = () if name_of_key(service) is not None else (DEFAULT_PORT,)
            listed = tuple(sorted({*base, *ports.get(service, ())}))
            if listed:
                out.append(MeshVip(service, r.spec.ip, listed, pinned_zone(r)))
    return tuple(sorted(out, key=lambda v: (v.service, v.zone)))


def dns_name(service: str, zone: str = "") -> str | None:
    """``<service>.mesh`` (``<service>.svc.<zone>.mesh`` for a zone-pinned VIP,
    ``<name>.extsvc.mesh`` for an external service's) in lower case, or None when the
    service or zone name cannot be one."""
    external = name_of_key(service)
    if external is not None:
        name = f"{external}.{EXTERNAL_SUBDOMAIN}.{DOMAIN}"
    else:
        name = f"{service}.svc.{zone}.{DOMAIN}" if zone else f"{service}.{DOMAIN}"
    try:
        return normalise_name(name).rstrip(".")
    except InvalidTable:
        return None


def dns_table(vips: Iterable[MeshVip]) -> DnsTable:
    """The DnsTable of one mesh for its agents; its version is a digest of its wire
    form (``zone_cp.agent_wire``), so it names exactly what an agent receives.

    A name that two services share in lower case (``Backend`` and ``backend``) goes to
    the first in service order; a service whose name is no DNS name has no entry. An
    external service's name comes first: a service named ``httpbin.extsvc`` cannot take
    ``httpbin.extsvc.mesh`` from the MeshExternalService ``httpbin``."""
    entries: dict[str, MeshVip] = {}
    for vip in sorted(vips, key=lambda v: (name_of_key(v.service) is None, v.service, v.zone)):
        name = dns_name(vip.service, vip.zone)
        if name is not None:
            entries.setdefault(name, vip)
    table = DnsTable("", tuple(DnsEntry(name, (vip.address,), tuple(vip.ports))
                               for name, vip in sorted(entries.items())))
    wire = dns_table_message(table).SerializeToString(deterministic=True)
    return replace(table, version=hashlib.sha256(wire).hexdigest()[:16])


def wants_vip_outbounds(dataplane: Resource) -> bool:
    # A transparent proxy always does: its VIPs are capture chains, nothing to bind.
    if isinstance(dataplane.spec, DataplaneSpec) and \
            dataplane.spec.networking.transparent_proxying is not None:
        return True
    return dataplane.labels.get(VIP_OUTBOUNDS_LABEL, "").lower() != "false"


def vip_outbounds(vips: Iterable[MeshVip], dataplane: Resource) -> tuple[OutboundListener, ...]:
    """The VIP listeners of ``dataplane``: none when it opted out, and none where it
    already has an explicit outbound on the same address and port."""
    if not wants_vip_outbounds(dataplane) or not isinstance(dataplane.spec, DataplaneSpec):
        return ()
    explicit = {(ob.address or "127.0.0.1", ob.port)
                for ob in dataplane.spec.networking.outbound}
    return tuple(OutboundListener(service=vip.service, port=port, address=vip.address,
                                  zone=vip.zone,
                                  external=name_of_key(vip.service) is not None)
                 for vip in vips for port in vip.ports if (vip.address, port) not in explicit)


def bind_hint(nack: str, cidr: str = "240.0.0.0/4") -> str | None:
    """What fixes a listener update Envoy NACKed because it cannot bind a VIP of
    ``cidr`` (its message names the address), else None."""
    found = _CANNOT_BIND.search(nack)
    if found is None:
        return None
    try:
        address = ipaddress.ip_address(found.group(1))
        if address not in ipaddress.ip_network(cidr, strict=False):
            return None
    except ValueError:
        return None
    return (f"Envoy cannot bind the VIP {address}: route the VIP range to lo in the "
            f"sidecar's network namespace (`ip route add local {cidr} dev lo`, or run the "
            f"sidecar with `gossamer proxy run --vip-route`), or label the Dataplane "
            f'{VIP_OUTBOUNDS_LABEL}: "false"')


class VipView:
    """``MeshVip``s of each mesh, computed once per ``MeshState`` generation: every proxy
    of the mesh and the DNS publisher read the same tuple. ``cidr`` is the range they
    come from (the zone's ``--vip-cidr``), for ``bind_hint``."""

    def __init__(self, state: MeshState, cidr: str = "240.0.0.0/4") -> None:
        self._state = state
        self.cidr = cidr
        self._generation = -1
        self._cache: dict[str, tuple[MeshVip, ...]] = {}
        self._previous: dict[str, tuple[MeshVip, ...]] = {}
        self._ports: dict[str, dict[str, tuple[Service, frozenset[int]]]] = {}

    def of(self, mesh: str) -> tuple[MeshVip, ...]:
        """The mesh's VIPs; the very same tuple as before while they stay equal, so a
        caller can tell "unchanged" by identity."""
        if self._generation != self._state.generation:
            self._generation = self._state.generation
            self._previous, self._cache = {**self._previous, **self._cache}, {}
        vips = self._cache.get(mesh)
        if vips is None:
            ports = known_ports(self._state.declared_ports(mesh),
                                self._state.shared_services(mesh),
                                self._ports.setdefault(mesh, {}))
            vips = mesh_vips(self._state.of_kind("VirtualIP", mesh), ports)
            previous = self._previous.get(mesh)
            self._cache[mesh] = vips = previous if previous == vips else vips
        return vips
