"""The zone CP's in-memory view of its meshes, and ``ProxyContext`` built from it.

``MeshState`` follows the store (Meshes, Dataplanes, ZoneIngresses, ZoneEgresses, VirtualIPs,
MeshExternalServices and Secrets, and every policy kind) and calls its listeners after
each change, so the xDS server regenerates only on events.
``context_for`` is pure over the state: the Dataplane, its mesh's mTLS mode, the policies
matched for it, and every service it may call with local endpoints (priority 0) and the
other zones' ingresses that offer the service (priority 1). Outbound (``to[]``) confs are
matched only for the services the proxy can reach (its outbounds and their routes'
backends, ``gossamer.policy.RouteBackends``): matching every service of the mesh as a
destination made ``context_for`` grow with the mesh (docs/benchmarks.md).

A Mesh with ``routing.zoneEgress`` sends its sidecars' traffic through this zone's
egresses (``through_egress``): external services get them as ``via`` (with none, a
``problem``: never around the egress the operator asked for), and with ``crossZone``
other zones' ingresses are replaced by the egresses as the remote endpoints (the egress
passes the mTLS on by SNI to the real ingresses: ``plain_services``).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

from gossamer.model.base import Resource
from gossamer.model.dataplane import DataplaneSpec
from gossamer.model.labels import ORIGIN_LABEL, PROTOCOL_TAG, SERVICE_TAG, ZONE_LABEL
from gossamer.model.mesh import MeshSpec
from gossamer.model.registry import REGISTRY
from gossamer.model.zone import disabled_zones
from gossamer.model.zoneegress import ZoneEgressSpec
from gossamer.model.zoneingress import ZoneIngressSpec
from gossamer.policy import ProxyPolicies, RouteBackends, match_policies
from gossamer.policy.index import Bucket, Candidates
from gossamer.policy.selectors import ProxyView
from gossamer.store.base import Store
from gossamer.store.view import StoreView, follow
from proxy.context import (
    Egress,
    OutboundListener,
    ProxyContext,
    RemoteZone,
    Service,
    ServicePort,
)
from zone_cp.external_services import external_services
from zone_cp.ingress_names import is_ip
from zone_cp.local_endpoints import LocalEndpoints
from zone_cp.ordered_policies import MeshPolicies

log = logging.getLogger(__name__)
POLICY_KINDS = [d.name for d in REGISTRY.policies()]
POLICY_SET = frozenset(POLICY_KINDS)
# MeshExternalServices are destinations too (``zone_cp.external_services``), and the
# Secrets their CAs may come from.
EXTERNAL_KINDS = frozenset({"MeshExternalService", "Secret"})
KINDS = ["Mesh", "Dataplane", "ZoneIngress", "ZoneEgress", "Zone", "VirtualIP",
         *sorted(EXTERNAL_KINDS), *POLICY_KINDS]
Key = tuple[str, str, str]


class MeshState:
    def __init__(self, store: Store | StoreView, zone: str,
                 names: Callable[[str], tuple[str, ...]] | None = None) -> None:
        # A view (``gossamer.store.view``) when the CP keeps one: the state then holds
        # the view's own resource objects, not copies.
        self._store = store
        self.zone = zone
        # The addresses of an ingress advertised by a host name (zone_cp.ingress_names):
        # EDS carries IPs only, so a name without addresses reaches no proxy.
        self._names = names or (lambda _: ())
        self._items: dict[Key, Resource] = {}
        # The same resources by kind, and what was derived from them since the last
        # change (each mesh's services, the services each set of outbounds reaches):
        # every proxy of a mesh shares them, so a change costs one rebuild, not one per
        # connected proxy.
        self._by_kind: dict[str, dict[Key, Resource]] = defaultdict(dict)
        self._derived: dict[tuple[object, ...], object] = {}
        # Each mesh's policies, ordered, indexed and their route backends, changed in
        # place by each policy change (zone_cp.ordered_policies).
        self._ordered: dict[str, MeshPolicies] = {}
        self._listeners: list[Callable[[Resource | None], None]] = []
        self._warned: set[tuple[str, str, str]] = set()  # external services' problems
        # Each mesh's local endpoints by service, changed Dataplane by Dataplane: a
        # registration rebuilds the services of its inbounds, not the mesh's.
        self._local = LocalEndpoints(zone)
        self.generation = 0
        # What the last change may have changed, read by listeners as they are called.
        self.touched = Touched(None, None)

    def listen(self, listener: Callable[[Resource | None], None]) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    async def run(self) -> None:
        await follow(self._store, KINDS, self._reset, self._changed)

    def _reset(self, resources: list[Resource]) -> None:
        self._items = {r.key: r for r in resources}
        self._by_kind = defaultdict(dict)
        for r in resources:
            self._by_kind[r.type][r.key] = r
        self._ordered = {mesh: MeshPolicies(mesh, self.zone, policies) for mesh, policies
                         in _by_mesh(r for r in resources if r.type in POLICY_SET).items()}
        self._local.reset(list(self._by_kind["Dataplane"].values()))
        self._derived.clear()
        self.touched = Touched(None, None)
        self._bump(None)

    def _changed(self, res: Resource, deleted: bool) -> None:
        old = self._items.get(res.key)
        if deleted:
            self._items.pop(res.key, None)
            self._by_kind[res.type].pop(res.key, None)
        else:
            self._items[res.key] = res
            self._by_kind[res.type][res.key] = res
        if res.type in POLICY_SET:
            held = self._ordered.get(res.mesh)
            if held is None:
                held = self._ordered[res.mesh] = MeshPolicies(res.mesh, self.zone)
            routes_changed = held.discard(res.key) if deleted else held.put(res)
            if routes_changed:
                self._derived.pop(("reachable", res.mesh), None)
            # Only proxies in the buckets of its versions before and after can have
            # other candidates; any proxy may reach others through changed routes.
            selects = None if routes_changed else frozenset(
                b for p in (old, None if deleted else res) if p is not None
                and (b := held.index.bucket_of(p)) is not None)
            self.touched = Touched(res.mesh, frozenset(), selects)
        elif res.type == "Dataplane":
            names = self._local.update(old, None if deleted else res)
            self._patch_services(res.mesh, names)
            self.touched = Touched(res.mesh, names)
        elif res.type == "ZoneIngress" and not (self._remote_ingress(old) or (
                not deleted and self._remote_ingress(res))):
            # This zone's own ingress (its available services follow every registration
            # here): no sidecar's services come from it.
            self.touched = Touched("", frozenset())
        else:
            self.touched = self._forget(res.type, res.mesh, res.name)
        self._bump(res)

    def refresh(self) -> None:
        """Build everything again and tell the listeners: what an ingress's name resolves
        to changed (``zone_cp.ingress_names``)."""
        self.touched = self._forget("ZoneIngress", "", "")
        self._bump(None)

    def _forget(self, kind: str, mesh: str, name: str) -> Touched:
        """Drop what was derived from resources of ``kind`` in ``mesh`` (a Dataplane's
        change patches its services instead: ``_patch_services``); what may have changed.
        A policy change drops nothing here: ``_changed`` has updated the mesh's
        ``MeshPolicies`` in place (and dropped the memo of reachable services if a route's
        backends changed)."""
        if kind in EXTERNAL_KINDS:
            self._derived.pop(("services", mesh), None)
            self._derived.pop(("external", mesh), None)
            return Touched(mesh, None)
        if kind == "Mesh":  # its egress routing shapes its services
            self._derived.pop(("services", name), None)
            return Touched(name, None)
        if kind in ("ZoneIngress", "ZoneEgress", "Zone"):  # every mesh's services
            for key in [k for k in self._derived if k[0] in ("services", "remote")]:
                del self._derived[key]
            return Touched(None, None)
        return Touched(mesh, frozenset())

    def _remote_ingress(self, res: Resource | None) -> bool:
        """Whether ``res`` may be another zone's ingress (what ``_remote_zones`` reads)."""
        if res is None:
            return False
        spec = res.spec
        owner = res.labels.get(ZONE_LABEL) or (
            spec.zone if isinstance(spec, ZoneIngressSpec) else None)
        return owner != self.zone

    def _patch_services(self, mesh: str, names: frozenset[str]) -> None:
        """Build again only the services ``names`` of the mesh's services, if built: a
        new map (the previous one may be held), in the order the full build gives."""
        built = self._derived.get(("services", mesh))
        if built is None or not names:
            return
        assert isinstance(built, dict)
        plain = {n: s for n in sorted(names) if (s := self._plain_service(mesh, n))}
        new = dict(built)
        new.update(self._routed(mesh, plain))
        for gone in names - plain.keys():
            new.pop(gone, None)
        if new.keys() != built.keys():  # names come or go: local and remote ones sorted
            new = {**{n: new[n] for n in sorted(n for n, s in new.items()
                                                if s.external is None)},
                   **{n: s for n, s in new.items() if s.external is not None}}
        self._derived[("services", mesh)] = new

    def _bump(self, res: Resource | None) -> None:
        self.generation += 1
        for listener in list(self._listeners):
            listener(res)

    # -- queries ------------------------------------------------------------------------

    def get(self, kind: str, name: str, mesh: str = "") -> Resource | None:
        return self._items.get((kind, mesh, name))

    def of_kind(self, kind: str, mesh: str | None = None) -> list[Resource]:
        return [r for (_, m, _), r in sorted(self._by_kind.get(kind, {}).items())
                if mesh is None or m == mesh]

    def disabled_zones(self) -> set[str]:
        return disabled_zones(self.of_kind("Zone"))

    def services(self, mesh: str) -> dict[str, Service]:
        """Every service of the mesh, local instances first, then other zones' ingresses
        (a new dict each call; built once per change)."""
        return dict(self.shared_services(mesh))

    def policies(self, mesh: str) -> list[Resource]:
        """Every policy of the mesh in ``policy_order``, a new list per call (kept in
        order as policies change; proxies read ``candidates``, not this list)."""
        held = self._ordered.get(mesh)
        return held.ordered.resources() if held is not None else []

    def route_backends(self, mesh: str) -> RouteBackends:
        """The backends the mesh's routes name, by destination: changed in place by
        each policy change, so read it now rather than keep it."""
        held = self._ordered.get(mesh)
        return held.routes if held is not None else RouteBackends(mesh)

    def _services(self, mesh: str) -> dict[str, Service]:
        return self._routed(mesh, self.plain_services(mesh))

    def _routed(self, mesh: str, services: dict[str, Service]) -> dict[str, Service]:
        """``services`` of the mesh as its sidecars reach them (its egress routing, no
        client keys)."""
        spec = getattr(self.get("Mesh", mesh), "spec", None)
        routing = spec.egress if isinstance(spec, MeshSpec) else None
        if routing is not None and (routing.external_services or routing.cross_zone):
            services = through_egress(services, self.egresses(mesh), self.zone,
                                      external=routing.external_services,
                                      cross_zone=routing.cross_zone)
        return without_client_keys(services)

    def egresses(self, mesh: str) -> tuple[Egress, ...]:
        """This zone's egresses that serve ``mesh``, by name."""
        out = []
        for ze in self.of_kind("ZoneEgress"):
            spec = ze.spec
            if (not isinstance(spec, ZoneEgressSpec) or ORIGIN_LABEL in ze.labels
                    or (spec.zone or self.zone) != self.zone or mesh not in spec.meshes):
                continue
            address, port = spec.networking.dialled()
            out.append(Egress(address=address, port=port, zone=self.zone, mesh=mesh))
        return tuple(out)

    def plain_services(self, mesh: str) -> dict[str, Service]:
        """The mesh's services as they are, not routed through an egress (what the
        egress itself reaches: ``zone_cp.egresses``)."""
        remote, _ = self._remote(mesh)
        services = {n: s for n in sorted({*self._local.names(mesh), *remote})
                    if (s := self._plain_service(mesh, n)) is not None}
        services.update(self._external(mesh))
        return services

    def _plain_service(self, mesh: str, name: str) -> Service | None:
        """One service of ``plain_services``, or None when nothing offers it."""
        endpoints, protocol = self._local.service(mesh, name)
        remote, remote_protocol = self._remote(mesh)
        zones = remote.get(name)
        if protocol is None and zones is None:
            return None
        return Service(name=name, protocol=protocol or remote_protocol.get(name, "tcp"),
                       endpoints=endpoints,
                       remote=tuple(sorted(zones or (), key=lambda r: r.zone)))

    def _remote(self, mesh: str) -> tuple[dict[str, list[RemoteZone]], dict[str, str]]:
        """Other zones' ingresses offering the mesh's services, and the protocols they
        list, until a ZoneIngress or Zone changes."""
        built = self._derived.get(("remote", mesh))
        if built is None:
            protocol: dict[str, str] = {}
            built = self._derived[("remote", mesh)] = (self._remote_zones(mesh, protocol),
                                                       protocol)
        assert isinstance(built, tuple)
        return built

    def _external(self, mesh: str) -> dict[str, Service]:
        built = self._derived.get(("external", mesh))
        if built is None:
            built = self._derived[("external", mesh)] = external_services(
                # keyed extsvc@<name>: never a service's name
                self.of_kind("MeshExternalService", mesh), self.zone,
                lambda name: self.get("Secret", name, mesh))
            self._warn_unreachable(mesh, built)
        assert isinstance(built, dict)
        return built

    def declared_ports(self, mesh: str) -> dict[str, set[int]]:
        """Each service's application ports, from the inbounds of the mesh's Dataplanes
        (``zone_cp.mesh_dns.declared_ports``), without going through them."""
        return self._local.declared_ports(mesh)

    def _warn_unreachable(self, mesh: str, external: Mapping[str, Service]) -> None:
        """Say once per problem why an external service gets no endpoints (its callers
        see only 503s), and again only after it was fixed and came back."""
        problems = {(mesh, s.external.name, s.external.problem) for s in external.values()
                    if s.external is not None and s.external.problem}
        mine = {p for p in self._warned if p[0] == mesh}
        for _, name, problem in sorted(problems - mine):
            log.warning("mesh %s: MeshExternalService %s has no endpoints: %s", mesh, name,
                        problem)
        self._warned = (self._warned - mine) | problems

    def _remote_zones(self, mesh: str, protocol: dict[str, str]) -> dict[str, list[RemoteZone]]:
        remote: dict[str, list[RemoteZone]] = defaultdict(list)
        disabled = self.disabled_zones()
        for zi in self.of_kind("ZoneIngress"):
            spec = zi.spec
            if not isinstance(spec, ZoneIngressSpec):
                continue
            owner = zi.labels.get(ZONE_LABEL) or spec.zone
            if owner is None or owner == self.zone or owner in disabled:
                continue
            net = spec.networking
            address = net.advertised_address or net.address
            port = net.advertised_port or net.port
            addresses = (address,) if is_ip(address) else self._names(address)
            for avail in spec.available_services:
                name = avail.tags.get(SERVICE_TAG)
                if avail.mesh != mesh or not name or avail.instances <= 0:
                    continue
                ports = tuple(ServicePort(p.port, p.protocol) for p in avail.ports)
                remote[name].extend(RemoteZone(zone=owner, address=ip, port=port,
                                               instances=avail.instances, ports=ports)
                                    for ip in addresses)
                protocol.setdefault(name, avail.tags.get(PROTOCOL_TAG, "tcp"))
        return remote

    def mtls_mode(self, mesh: str) -> str:
        res = self.get("Mesh", mesh)
        if res is not None and isinstance(res.spec, MeshSpec) and res.spec.mtls:
            return res.spec.mtls.mode.value
        return "strict"

    def passthrough(self, mesh: str) -> bool:
        spec = getattr(self.get("Mesh", mesh), "spec", None)
        return not isinstance(spec, MeshSpec) or spec.passthrough

    def shared_services(self, mesh: str) -> Mapping[str, Service]:
        """``services(mesh)`` without the copy: the one read-only map every proxy of the
        mesh reads until the next change."""
        built = self._derived.get(("services", mesh))
        if built is None:
            built = self._derived[("services", mesh)] = self._services(mesh)
        assert isinstance(built, dict)
        return MappingProxyType(built)

    def candidates(self, view: ProxyView) -> Candidates:
        """The mesh's policies that select the proxy ``view``, in policy order, with
        their identity, looked up in the mesh's ``PolicyIndex`` (changed in place by each
        policy change; the result is new on every call)."""
        held = self._ordered.get(view.mesh)
        return held.index.select(view) if held is not None else Candidates((), ())

    def inputs(self, dataplane: Resource,
               extra_outbounds: tuple[OutboundListener, ...] = ()) -> ProxyInputs:
        """What ``dataplane``'s proxy is generated from in the current state, short of
        its services' endpoints (``shared_services``)."""
        spec = dataplane.spec
        if not isinstance(spec, DataplaneSpec):
            raise TypeError(f"{dataplane.type} {dataplane.name} is not a Dataplane")
        mesh = dataplane.mesh
        outbounds = tuple(OutboundListener(service=ob.service, port=ob.port,
                                           address=ob.address or "127.0.0.1")
                          for ob in spec.networking.outbound) + extra_outbounds
        view = ProxyView.of(dataplane, self.zone)
        return ProxyInputs(
            dataplane=dataplane, mesh=self.get("Mesh", mesh), outbounds=outbounds,
            reachable=self._reachable(mesh, tuple(ob.service for ob in outbounds)),
            view=view, candidates=self.candidates(view))

    def _reachable(self, mesh: str, outbounds: tuple[str, ...]) -> frozenset[str]:
        """``RouteBackends.reachable``, once per set of outbounds (proxies of one service
        share theirs) until a change of the mesh's route backends."""
        memo = self._derived.setdefault(("reachable", mesh), {})
        assert isinstance(memo, dict)
        found = memo.get(outbounds)
        if found is None:
            found = memo[outbounds] = self.route_backends(mesh).reachable(outbounds)
        assert isinstance(found, frozenset)
        return found

    def match(self, inputs: ProxyInputs) -> ProxyPolicies:
        return match_policies(inputs.dataplane, inputs.candidates.policies,
                              destinations=inputs.reachable, zone=self.zone,
                              only_destinations=True, presorted=True)

    def context(self, inputs: ProxyInputs, matched: ProxyPolicies,
                services: Mapping[str, Service] | None = None) -> ProxyContext:
        """The proxy's context from its ``inputs`` and ``matched`` policies; ``services``
        (by default the mesh's ``shared_services``) is what the generator reads them
        from."""
        dataplane = inputs.dataplane
        assert isinstance(dataplane.spec, DataplaneSpec)
        mesh = dataplane.mesh
        if services is None:
            services = self.shared_services(mesh)
        missing = frozenset(ob.service for ob in inputs.outbounds
                            if ob.service not in services)
        if missing:  # an outbound to a service nobody offers yet: known, no endpoints
            services = _Known(services, missing)
        return ProxyContext(mesh=mesh, name=dataplane.name, zone=self.zone,
                            dataplane=dataplane.spec, policies=matched,
                            outbounds=inputs.outbounds, services=services,
                            mtls_mode=self.mtls_mode(mesh),
                            passthrough=self.passthrough(mesh))

    def context_for(self, dataplane: Resource,
                    extra_outbounds: tuple[OutboundListener, ...] = ()) -> ProxyContext:
        inputs = self.inputs(dataplane, extra_outbounds)
        return self.context(inputs, self.match(inputs), dict(self.shared_services(
            dataplane.mesh)))


@dataclass(frozen=True)
class Touched:
    """What one change may have changed: the services of ``mesh`` whose ``Service`` may
    differ (None: any of them), every mesh's when ``mesh`` is None, no mesh's when it is
    "" (this zone's own ZoneIngress). A Dataplane touches
    the services of its inbounds, before and after; a policy or a VirtualIP none."""


    mesh: str | None
    services: frozenset[str] | None
    # A policy's change: the ``PolicyIndex`` buckets of the proxies whose candidates
    # may differ (``lookup_keys``); None: any proxy of the mesh.
    selects: frozenset[Bucket] | None = None


@dataclass(frozen=True, eq=False)
class ProxyInputs:
    """What one proxy is generated from, short of its services' endpoints: its
    Dataplane, its Mesh, its outbounds (VIP ones included), the services they can reach,
    and the policies that may select it. ``same_as`` tells whether a proxy needs
    generating again (together with the services it read: ``zone_cp.fleet``)."""

    dataplane: Resource
    mesh: Resource | None
    outbounds: tuple[OutboundListener, ...]
    reachable: frozenset[str]
    view: ProxyView
    candidates: Candidates

    def same_as(self, other: ProxyInputs) -> bool:
        """Resources compare by identity (``MeshState`` holds a new object for every
        stored change), candidate policies by their stored versions."""
        return (self.dataplane is other.dataplane and self.mesh is other.mesh
                and self.outbounds == other.outbounds and self.reachable == other.reachable
                and self.candidates.identity == other.candidates.identity)


class _Known(Mapping[str, Service]):
    """``services`` and, for the names in ``extra``, a service without endpoints; a view,
    so a generator's lookups still go to ``services`` (``zone_cp.fleet_shared.Reading``
    records them)."""

    def __init__(self, services: Mapping[str, Service], extra: frozenset[str]) -> None:
        self._services = services
        self._extra = extra

    def __getitem__(self, name: str) -> Service:
        found = self._services.get(name)
        if found is not None:
            return found
        if name in self._extra:
            return Service(name=name)
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        yield from self._services
        yield from (n for n in sorted(self._extra) if n not in self._services)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def through_egress(services: Mapping[str, Service], egresses: tuple[Egress, ...],
                   zone: str, *, external: bool, cross_zone: bool) -> dict[str, Service]:
    """``services`` as a sidecar reaches them when its Mesh routes through the egress."""
    out = dict(services)
    for key, svc in services.items():
        if svc.external is not None and external:
            ext = (replace(svc.external, via=egresses) if egresses else replace(
                svc.external, problem=f"the Mesh routes external services through the zone "
                                      f"egress, and zone {zone!r} has none for this mesh"))
            out[key] = replace(svc, external=ext)
        elif svc.remote and cross_zone:
            remote = tuple(replace(r, address=e.address, port=e.port)
                           for r in svc.remote for e in egresses)
            out[key] = replace(svc, remote=remote)
    return out


def without_client_keys(services: Mapping[str, Service]) -> dict[str, Service]:
    """``services`` as sidecars are generated from: no external service's client key.
    Only the zone egress presents a client certificate (``plain_services`` keeps it for
    the egress); one reached directly has nowhere to send (503) and says why."""
    out = dict(services)
    for key, svc in services.items():
        ext = svc.external
        if ext is None or ext.tls is None or not ext.tls.client_key_pem:
            continue
        problem = ext.problem or ("" if ext.via else (
            "it presents a client certificate, which only the zone egress holds: route "
            "the Mesh's external services through it (routing.zoneEgress)"))
        tls = replace(ext.tls, client_cert_pem=b"", client_key_pem=b"")
        out[key] = replace(svc, external=replace(ext, tls=tls, problem=problem))
    return out


def _by_mesh(resources: Iterable[Resource]) -> dict[str, list[Resource]]:
    out: dict[str, list[Resource]] = defaultdict(list)
    for r in resources:
        out[r.mesh].append(r)
    return out

