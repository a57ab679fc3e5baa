"""The zone CP's connected sidecars and their regeneration after changes.

Each sidecar ADS stream joins the ``Fleet`` with a ``deliver`` callback. After a change
to the ``MeshState`` the fleet runs a *round*: for the members the change may concern it
computes the proxy's ``ProxyInputs`` (its Dataplane, Mesh, outbounds and what they reach,
the policies that may select it) and the services whose endpoints changed, and
regenerates only the members whose inputs differ or that read a changed service
(``Reading`` records which services a generation looked up). So an endpoint change
reaches the callers of that service, and a policy on one service regenerates only the
proxies it may select.

Which members a change may concern is looked up, not found by walking the fleet: the
state says what each change touched (``MeshState.touched``: a Dataplane's services, a
policy's index buckets), and ``_Index`` holds the members by mesh, by Dataplane, by the
services they read, by the policy buckets their view looks up and by VIP use. A
registration thus costs its own member and its service's readers, whatever the fleet's
size.

Rounds are serial. Changes arriving while a round runs are folded into the next one,
and a round starts at most once per ``interval`` (bursts cost each proxy a few
regenerations, not one per change). A round yields to the event loop every ``slice``
seconds, so the agent API, certificates and ACKs are answered while a mesh-wide change
regenerates thousands of proxies. Within one state generation, proxies with the same
policy-matching inputs share one ``match_policies`` result, and proxies of one class one
shape of outbounds, routes and clusters (``zone_cp.fleet_shared.Shared``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from gossamer.model.base import Resource
from gossamer.policy.index import Bucket, lookup_keys
from proxy.context import Service
from proxy.envoy import PieceCache
from proxy.envoy.resources import ProxyResources
from zone_cp.agent_session import same_document
from zone_cp.fleet_shared import Shared
from zone_cp.mesh_dns import VipView, vip_outbounds, wants_vip_outbounds
from zone_cp.mesh_state import EXTERNAL_KINDS, POLICY_SET, MeshState, ProxyInputs
from zone_cp.xds_resources import Entries

log = logging.getLogger(__name__)

Deliver = Callable[[ProxyResources, Entries], None]
_K = TypeVar("_K", bound=Hashable)


@dataclass(eq=False)
class Member:
    """One connected sidecar: the Dataplane it registered (used while the store has
    none), where its resources go, and what they were last generated from."""

    node_id: str
    registered: Resource
    deliver: Deliver
    inputs: ProxyInputs | None = None
    inputs_key: tuple[object, ...] = ()  # what ``inputs`` were derived from
    read: frozenset[str] | None = frozenset()  # services it read; None: all of them
    regenerations: int = 0
    left: bool = False
    buckets: Sequence[Bucket] = ()  # where a policy that may select it is indexed

    @property
    def mesh(self) -> str:
        return self.registered.mesh

    @property
    def dataplane_key(self) -> tuple[str, str]:
        return (self.registered.mesh, self.registered.name)


@dataclass
class _Changes:
    """What changed since the last round: every mesh (``all_meshes``), the meshes all of
    whose members must be checked (the Mesh, a route's backends), the policy index
    buckets of the members a policy may select, the Dataplanes changed, per mesh the
    services that may differ (None: any) and the meshes whose VIPs may differ."""

    all_meshes: bool = False
    meshes: set[str] = field(default_factory=set)
    buckets: set[Bucket] = field(default_factory=set)
    dataplanes: set[tuple[str, str]] = field(default_factory=set)
    services: dict[str, set[str] | None] = field(default_factory=dict)
    vips: set[str] = field(default_factory=set)

    def add_services(self, mesh: str, names: frozenset[str] | None) -> None:
        held = self.services.get(mesh, set())
        if held is None or names is None:
            self.services[mesh] = None
        else:
            self.services[mesh] = held | names


class _Index:
    """The members by mesh, by the Dataplane they registered, by the services they read
    (``reads_all``: those that read every one) and, of those with VIP outbounds, by
    mesh: who a change can concern, found without walking the fleet."""

    def __init__(self) -> None:
        self.by_mesh: dict[str, set[Member]] = {}
        self.by_bucket: dict[Bucket, set[Member]] = {}
        self.by_dataplane: dict[tuple[str, str], set[Member]] = {}
        self.readers: dict[tuple[str, str], set[Member]] = {}
        self.reads_all: dict[str, set[Member]] = {}
        self.vips: dict[str, set[Member]] = {}

    def add(self, member: Member) -> None:
        self.by_mesh.setdefault(member.mesh, set()).add(member)
        self.by_dataplane.setdefault(member.dataplane_key, set()).add(member)

    def drop(self, member: Member) -> None:
        self.read(member, frozenset())
        self.wants_vips(member, False)
        self.selectable(member, ())
        _discard(self.by_mesh, member.mesh, member)
        _discard(self.by_dataplane, member.dataplane_key, member)

    def read(self, member: Member, read: frozenset[str] | None) -> None:
        """Move ``member`` from the readers of what it read to those of ``read``."""
        mesh = member.mesh
        if member.read is None:
            _discard(self.reads_all, mesh, member)
        else:
            for name in member.read:
                _discard(self.readers, (mesh, name), member)
        member.read = read
        if read is None:
            self.reads_all.setdefault(mesh, set()).add(member)
        else:
            for name in read:
                self.readers.setdefault((mesh, name), set()).add(member)

    def selectable(self, member: Member, buckets: Sequence[Bucket]) -> None:
        """File ``member`` under the policy index ``buckets`` of its current view."""
        if buckets == member.buckets:
            return
        for bucket in member.buckets:
            _discard(self.by_bucket, bucket, member)
        member.buckets = buckets
        for bucket in buckets:
            self.by_bucket.setdefault(bucket, set()).add(member)

    def wants_vips(self, member: Member, wants: bool) -> None:
        if wants:
            self.vips.setdefault(member.mesh, set()).add(member)
        else:
            _discard(self.vips, member.mesh, member)

    def concerned(self, changes: _Changes, services: Mapping[str, frozenset[str]],
                  vips: set[str]) -> set[Member]:
        """The members ``changes`` can concern, given the services that differ and the
        meshes whose VIPs do."""
        out: set[Member] = set()
        for mesh in changes.meshes:
            out |= self.by_mesh.get(mesh, set())
        for bucket in changes.buckets:
            out |= self.by_bucket.get(bucket, set())
        for key in changes.dataplanes:
            out |= self.by_dataplane.get(key, set())
        for mesh, names in services.items():
            out |= self.reads_all.get(mesh, set())
            for name in names:
                out |= self.readers.get((mesh, name), set())
        for mesh in vips:
            out |= self.vips.get(mesh, set())
        return out


class Fleet:
    def __init__(self, state: MeshState, vips: VipView, cache: PieceCache, *,
                 interval: float = 0.05, slice_seconds: float = 0.01) -> None:
        self._state = state
        self._vips = vips
        self._shared = Shared(state, cache)
        self._interval = interval
        self._slice = slice_seconds
        self._members: dict[str, Member] = {}
        self._index = _Index()
        self._changes = _Changes()
        self._wanted = asyncio.Event()
        self._services: dict[str, Mapping[str, Service]] = {}  # as of the last round
        self._vip_seen: dict[str, object] = {}  # each mesh's VIPs as of the last round
        self._policy_epoch: dict[str, int] = {}  # per mesh, bumped by each policy change
        self.rounds = 0
        self.regenerations = 0
        self.checked = 0  # members whose inputs a round took
        state.listen(self._changed)

    # -- membership ---------------------------------------------------------------------

    def join(self, node_id: str, dataplane: Resource, deliver: Deliver) -> Callable[[], None]:
        """Generate ``node_id``'s resources now from ``dataplane`` as registered (the
        state may not hold that version yet) and deliver them, then again after every
        change that affects them; returns the function that leaves."""
        member = Member(node_id, dataplane, deliver)
        replaced = self._members.get(node_id)
        if replaced is not None:
            self._index.drop(replaced)
        self._members[node_id] = member
        self._index.add(member)
        self._shared.keep_owns = _owns_for(len(self._members))
        self._regenerate(member, self._inputs(member, dataplane))

        def leave() -> None:
            member.left = True
            if self._members.get(node_id) is member:
                del self._members[node_id]
                self._index.drop(member)
                self._shared.keep_owns = _owns_for(len(self._members))
                if member.mesh not in self._index.by_mesh:  # its last member
                    self._services.pop(member.mesh, None)
                    self._vip_seen.pop(member.mesh, None)

        return leave

    def __len__(self) -> int:
        return len(self._members)

    # -- rounds -------------------------------------------------------------------------

    def _changed(self, res: Resource | None) -> None:
        touched = self._state.touched
        if res is not None and touched.mesh == "":
            return  # nothing a sidecar reads (this zone's own ingress)
        changes = self._changes
        if res is None or touched.mesh is None:
            changes.all_meshes = True
            self._policy_epoch = {m: n + 1 for m, n in self._policy_epoch.items()}
        else:
            mesh = touched.mesh
            changes.add_services(mesh, touched.services)
            if res.type == "Dataplane":
                changes.dataplanes.add((mesh, res.name))
            elif res.type in POLICY_SET and touched.selects is not None:
                changes.buckets |= touched.selects  # the members it may select
                self._policy_epoch[mesh] = self._policy_epoch.get(mesh, 0) + 1
            elif res.type != "VirtualIP" and res.type not in EXTERNAL_KINDS:
                changes.meshes.add(mesh)  # the Mesh, a route's backends: every member
                self._policy_epoch[mesh] = self._policy_epoch.get(mesh, 0) + 1
            if touched.services != frozenset():  # VIPs: by service, with their ports
                changes.vips.add(mesh)
            if res.type == "VirtualIP":
                changes.vips.add(mesh)
        self._wanted.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wanted.wait()
            await asyncio.sleep(0)  # the rest of this burst's events, same loop turn
            self._wanted.clear()
            started = loop.time()
            try:
                await self.round()
            except Exception:  # a bug here must not end every proxy's updates
                log.exception("regenerating the zone's proxies failed")
            await asyncio.sleep(max(0.0, started + self._interval - loop.time()))

    async def round(self) -> int:
        """Regenerate every member the changes since the last round affect; returns how
        many. Checking a member costs its inputs, so the check yields in slices too."""
        changes, self._changes = self._changes, _Changes()
        changed = self._changed_services(changes)
        if changes.all_meshes:
            concerned: Iterable[Member] = list(self._members.values())
        else:
            concerned = self._index.concerned(changes, changed, self._changed_vips(changes))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._slice
        done = 0
        for member in concerned:
            if loop.time() >= deadline:
                await asyncio.sleep(0)
                deadline = loop.time() + self._slice
            if member.left:
                continue
            self.checked += 1
            inputs = self._inputs(member)
            services = changed.get(member.mesh, frozenset())
            if (member.inputs is None or not inputs.same_as(member.inputs)
                    or (services and (member.read is None or member.read & services))):
                self._regenerate(member, inputs)
                done += 1
        self.rounds += 1
        return done

    def _changed_services(self, changes: _Changes) -> dict[str, frozenset[str]]:
        """Per mesh with members, the services whose endpoints or zones differ from the
        last round's, among those the changes may have changed."""
        hinted: Mapping[str, set[str] | None] = (
            dict.fromkeys(self._index.by_mesh) if changes.all_meshes else changes.services)
        out = {}
        for mesh, names in hinted.items():
            if mesh not in self._index.by_mesh:
                continue
            new = self._state.shared_services(mesh)
            old = self._services.get(mesh, {})
            self._services[mesh] = new
            found = frozenset(n for n in (old.keys() | new.keys() if names is None else names)
                              if old.get(n) != new.get(n))
            if found:
                out[mesh] = found
        return out

    def _changed_vips(self, changes: _Changes) -> set[str]:
        """The meshes of ``changes.vips`` whose VIPs differ from the last round's."""
        out = set()
        for mesh in changes.vips:
            if mesh in self._index.vips:
                vips = self._vips.of(mesh)
                if vips is not self._vip_seen.get(mesh):
                    self._vip_seen[mesh] = vips
                    out.add(mesh)
        return out

    # -- one proxy ----------------------------------------------------------------------

    def _inputs(self, member: Member, current: Resource | None = None) -> ProxyInputs:
        """The member's inputs now: the ones it holds while nothing they derive from
        changed (its Dataplane, its Mesh, the mesh's policies, the VIPs if it listens on
        them), else fresh."""
        registered = member.registered
        current = current or (self._state.get("Dataplane", registered.name, registered.mesh)
                              or registered)
        if current is not registered and same_document(current, registered):
            member.registered = current  # the state's copy, so the Dataplane is held once
        wants = wants_vip_outbounds(current)
        vips = self._vips.of(current.mesh) if wants else ()  # the same tuple while equal
        key = (current, self._state.get("Mesh", current.mesh),
               self._policy_epoch.get(current.mesh, 0), vips)
        if member.inputs is not None and _same(key, member.inputs_key):
            return member.inputs
        member.inputs_key = key
        self._index.wants_vips(member, wants)
        if wants:
            self._vip_seen.setdefault(current.mesh, vips)
        inputs = self._state.inputs(current, vip_outbounds(vips, current))
        self._index.selectable(member, lookup_keys(inputs.view))
        return inputs

    def _regenerate(self, member: Member, inputs: ProxyInputs) -> None:
        services = self._state.shared_services(member.mesh)
        self._services.setdefault(member.mesh, services)
        generated, entries, read = self._shared.generate(inputs, services)
        member.inputs = inputs
        self._index.read(member, read)
        member.regenerations += 1
        self.regenerations += 1
        member.deliver(generated, entries)


def _discard(index: dict[_K, set[Member]], key: _K, member: Member) -> None:
    held = index.get(key)
    if held is not None:
        held.discard(member)
        if not held:
            del index[key]


def _owns_for(members: int) -> int:
    """How many own-part templates the shared work keeps: every class of the members
    (at most one per member) and as many again that a change made obsolete, which go
    first (least recently used)."""
    return 2 * members + 64


def _same(a: tuple[object, ...], b: tuple[object, ...]) -> bool:
    """Equal element by element by identity (resources, tuples) or value (counters)."""
    return len(a) == len(b) and all(x is y or x == y for x, y in zip(a, b, strict=True))
