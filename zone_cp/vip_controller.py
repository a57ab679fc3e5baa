"""The zone CP's VIP shells: the allocator task and the DNS table publisher.

``VipAllocator`` keeps one ``VirtualIP`` per (mesh, service) in the store (and per
MeshExternalService the zone may reach: ``MeshState`` lists them among the services). It wakes on
``MeshState`` changes (services come and go with Dataplanes and other zones' ingresses;
a VirtualIP deleted by hand is allocated again) and when a gone service's grace period
ends, never on a poll. Each round reads the mesh's VirtualIPs from the store — not from
the state, which learns of our own writes a moment later — asks ``zone_cp.vips`` what
to change, and writes it. Store failures are retried after ``RETRY`` seconds.

``DnsPublisher`` pushes each mesh's DNS table (``zone_cp.mesh_dns``) to the agent
sessions of that mesh: to a session as it registers, and to all of them when the
table's content changes. A session holds at most one pending table: a newer one replaces
it in the queue, so an agent that reads slowly never makes the queue grow.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Callable

from gossamer.coalesce import Coalesced
from gossamer.errors import GossamerError, InvalidResource
from gossamer.model.base import Resource
from gossamer.model.mesh import MeshSpec
from gossamer.model.virtualip import (
    VirtualIPSpec,
    key_of,
    labels_for,
    resource_name,
    vip_key,
)
from gossamer.resources import ResourceManager
from proxy.context import Service
from zone_cp.agent_session import AgentSession, Change
from zone_cp.agents import AgentRegistry
from zone_cp.mesh_dns import VipView, dns_table
from zone_cp.mesh_state import MeshState
from zone_cp.updates import DnsTable
from zone_cp.vips import DEFAULT_GRACE, Absences, Network, VipsExhausted, allocate

log = logging.getLogger(__name__)

RETRY = 5.0
# The kinds whose changes can change a mesh's services or VIPs.
SERVICE_KINDS = frozenset({"Mesh", "Dataplane", "ZoneIngress", "Zone", "VirtualIP",
                           "MeshExternalService"})


class VipAllocator:
    def __init__(self, state: MeshState, manager: ResourceManager, network: Network, *,
                 grace: float = DEFAULT_GRACE,
                 clock: Callable[[], float] | None = None) -> None:
        self._state = state
        self._manager = manager
        self.network = network
        self._grace = grace
        self._clock = clock or asyncio.get_running_loop().time
        self._absences: dict[str, Absences] = {}
        self._wake = asyncio.Event()
        self._retry_at: float | None = None
        # Per mesh, the keys it wanted when last reconciled, and the meshes whose
        # VirtualIPs or Mesh changed since: a registration of one more instance of a
        # known service reads no VirtualIP from the store.
        self._done: dict[str, list[str]] = {}
        self._stale: set[str] = set()
        self._all_stale = True
        self.rounds = 0

    async def run(self) -> None:
        unlisten = self._state.listen(self._changed)
        if self._state.generation:  # the state was listed before we listened
            self._wake.set()
        try:
            while True:
                await self._sleep()
                await self.reconcile()
        finally:
            unlisten()

    def _changed(self, res: Resource | None) -> None:
        if res is not None and self._state.touched.mesh == "":
            return  # no mesh's services changed (this zone's own ingress)
        if res is None or res.type in SERVICE_KINDS:
            if res is None or res.type not in ("Dataplane", "MeshExternalService"):
                self._stale.add(res.name if res is not None and res.type == "Mesh"
                                else res.mesh if res is not None else "")
                self._all_stale = self._all_stale or res is None or not res.mesh
            self._wake.set()

    async def _sleep(self) -> None:
        """Until a change, the next release or the retry of a failed round."""
        due = [t for t in (self._retry_at, *(a.next_expiry() for a in
                                             self._absences.values())) if t is not None]
        timeout = max(min(due) - self._clock(), 0.0) if due else None
        # asyncio.timeout, not wait_for: before Python 3.12 wait_for can swallow a
        # cancellation that arrives as the event is set, and the task would not stop.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wake.wait()
        self._wake.clear()

    async def reconcile(self) -> None:
        """One round over every mesh the zone knows."""
        self.rounds += 1
        self._retry_at = None
        meshes = [m.name for m in self._state.of_kind("Mesh")]
        for mesh in list(self._absences):
            if mesh not in meshes:
                del self._absences[mesh]
        stale, all_stale = self._stale, self._all_stale
        self._stale, self._all_stale = set(), False
        for mesh in meshes:
            wanted = self._wanted(mesh)
            if not (all_stale or mesh in stale or self._done.get(mesh) != wanted
                    or self._release_due(mesh)):
                continue  # the same services, VIPs and Mesh as when last reconciled
            self._done.pop(mesh, None)
            try:
                await self._reconcile_mesh(mesh)
                self._done[mesh] = wanted
            except VipsExhausted as exc:
                log.error("mesh %s: %s", mesh, exc.detail)
            except GossamerError as exc:
                log.warning("mesh %s: allocating virtual IPs failed (%s); retrying in %gs",
                            mesh, exc.detail, RETRY)
                self._retry_at = self._clock() + RETRY

    def _release_due(self, mesh: str) -> bool:
        absences = self._absences.get(mesh)
        expiry = absences.next_expiry() if absences is not None else None
        return expiry is not None and expiry <= self._clock()

    def _wanted(self, mesh: str) -> list[str]:
        """The VIP keys the mesh needs: one per service, and with the Mesh's
        ``routing.zonePinnedNames`` one per (service, zone serving it) (``vip_key``)."""
        services = self._state.shared_services(mesh)
        keys = list(services)
        spec = getattr(self._state.get("Mesh", mesh), "spec", None)
        if isinstance(spec, MeshSpec) and spec.zone_pinned_names:
            keys += [vip_key(name, zone) for name, service in services.items()
                     for zone in serving_zones(service, self._state.zone)]
        return keys

    async def _reconcile_mesh(self, mesh: str) -> None:
        wanted = self._wanted(mesh)
        stored = {key_of(r): r for r in (await self._manager.list("VirtualIP", mesh)).items
                  if isinstance(r.spec, VirtualIPSpec)}
        absences = self._absences.setdefault(mesh, Absences(self._grace))
        for key in absences.expired(stored, wanted, self._clock()):
            res = stored.pop(key)
            log.info("mesh %s: releasing virtual IP %s of %s, gone for %gs", mesh,
                     _ip(res), key, self._grace)
            await self._manager.delete("VirtualIP", res.name, mesh)
        current = {k: ipaddress.ip_address(_ip(r)) for k, r in stored.items()}
        for key, address in allocate(self.network, current, wanted).items():
            held = stored.get(key)
            name = held.name if held is not None else resource_name(key)
            try:
                await self._manager.apply(Resource(
                    "VirtualIP", name, VirtualIPSpec(ip=str(address)), mesh=mesh,
                    labels=labels_for(key)))
            except InvalidResource as exc:  # the mesh went away meanwhile
                log.info("mesh %s: not allocating a virtual IP: %s", mesh, exc.detail)
                return
            log.info("mesh %s: virtual IP %s for %s", mesh, address, key)


def serving_zones(service: Service, zone: str) -> list[str]:
    """The zones that serve ``service`` as this zone (``zone``) sees it: itself when it
    has instances here, and every zone whose ingress offers it."""
    zones = {zone} if service.endpoints else set()
    zones.update(r.zone for r in service.remote)
    return sorted(zones)


def _ip(res: Resource) -> str:
    assert isinstance(res.spec, VirtualIPSpec)
    return res.spec.ip


class DnsPublisher:
    def __init__(self, state: MeshState, agents: AgentRegistry, vips: VipView) -> None:
        self._state = state
        self._agents = agents
        self._vips = vips
        self._tables: dict[str, DnsTable] = {}
        self._built: dict[str, tuple[object, DnsTable]] = {}  # the VIPs each was made of
        self._refresh = Coalesced(self.refresh)  # once per loop turn, however many changes
        state.listen(self._changed)
        agents.on_change(self._agent_changed)

    def table(self, mesh: str) -> DnsTable:
        table = self._tables.get(mesh)
        if table is None:
            table = self._tables[mesh] = self._build(mesh)
        return table

    def _build(self, mesh: str) -> DnsTable:
        """The mesh's table, made again only when ``VipView`` hands out other VIPs (it
        keeps the same tuple while they are equal)."""
        vips = self._vips.of(mesh)
        held = self._built.get(mesh)
        if held is None or held[0] is not vips:
            held = self._built[mesh] = (vips, dns_table(vips))
        return held[1]

    def _changed(self, res: Resource | None) -> None:
        if res is not None and self._state.touched.mesh == "":
            return  # no mesh's services changed (this zone's own ingress)
        if res is None or res.type in SERVICE_KINDS:
            self._refresh()

    def refresh(self) -> None:
        """Recompute the tables of the meshes with sessions; push those that changed.
        Every mesh with a session has a table (pushed as it registered), so the sessions
        are gone through only when a table changed: not once per registration."""
        changed = [(mesh, new) for mesh, old in sorted(self._tables.items())
                   if (new := self._build(mesh)).version != old.version]
        if not changed:
            return
        sessions = list(self._agents.sessions.values())
        meshes = {s.mesh for s in sessions}
        self._tables = {m: t for m, t in self._tables.items() if m in meshes}
        self._built = {m: b for m, b in self._built.items() if m in meshes}
        for mesh, new in changed:
            if mesh not in meshes:
                continue
            self._tables[mesh] = new
            log.info("mesh %s: DNS table %s, %d names", mesh, new.version, len(new.entries))
            for session in sessions:
                if session.mesh == mesh:
                    push(session, new)

    def _agent_changed(self, change: Change, session: AgentSession) -> None:
        if change is Change.REGISTERED:  # before its first update is streamed
            push(session, self.table(session.mesh))


def push(session: AgentSession, table: DnsTable) -> None:
    """Queue ``table`` for ``session``, replacing a table still waiting there (the
    session's mailbox keeps one per type)."""
    session.updates.put_nowait(table)
