"""The zone CP's connected sidecars and their regeneration after changes.

Each sidecar ADS stream joins the ``Fleet`` with a ``deliver`` callback. After a change
to the ``MeshState`` the fleet runs a *round*: for every member of a mesh the change
touched it computes the proxy's ``ProxyInputs`` (its Dataplane, Mesh, outbounds and what
they reach, the policies that may select it) and the services whose endpoints changed,
and regenerates only the members whose inputs differ or that read a changed service
(``Reading`` records which services a generation looked up). So an endpoint change
reaches the callers of that service, and a policy on one service regenerates only the
proxies it may select.

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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from gossamer.model.base import Resource
from proxy.context import Service
from proxy.envoy import PieceCache
from proxy.envoy.resources import ProxyResources
from zone_cp.agent_session import same_document
from zone_cp.fleet_shared import Shared
from zone_cp.mesh_dns import VipView, vip_outbounds
from zone_cp.mesh_state import POLICY_SET, MeshState, ProxyInputs
from zone_cp.xds_resources import Entries

log = logging.getLogger(__name__)

Deliver = Callable[[ProxyResources, Entries], None]


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

    @property
    def mesh(self) -> str:
        return self.registered.mesh


@dataclass
class _Changes:
    """What changed since the last round: meshes by name (``all_meshes`` for any)."""

    meshes: set[str] = field(default_factory=set)
    all_meshes: bool = False

    def touches(self, mesh: str) -> bool:
        return self.all_meshes or mesh in self.meshes


class Fleet:
    def __init__(self, state: MeshState, vips: VipView, cache: PieceCache, *,
                 interval: float = 0.05, slice_seconds: float = 0.01) -> None:
        self._state = state
        self._vips = vips
        self._shared = Shared(state, cache)
        self._interval = interval
        self._slice = slice_seconds
        self._members: dict[str, Member] = {}
        self._changes = _Changes()
        self._wanted = asyncio.Event()
        self._services: dict[str, Mapping[str, Service]] = {}  # as of the last round
        self._policy_epoch: dict[str, int] = {}  # per mesh, bumped by each policy change
        self.rounds = 0
        self.regenerations = 0
        state.listen(self._changed)

    # -- membership ---------------------------------------------------------------------

    def join(self, node_id: str, dataplane: Resource, deliver: Deliver) -> Callable[[], None]:
        """Generate ``node_id``'s resources now from ``dataplane`` as registered (the
        state may not hold that version yet) and deliver them, then again after every
        change that affects them; returns the function that leaves."""
        member = Member(node_id, dataplane, deliver)
        self._members[node_id] = member
        self._regenerate(member, self._inputs(member, dataplane))

        def leave() -> None:
            member.left = True
            if self._members.get(node_id) is member:
                del self._members[node_id]

        return leave

    def __len__(self) -> int:
        return len(self._members)

    # -- rounds -------------------------------------------------------------------------

    def _changed(self, res: Resource | None) -> None:
        if res is None or not res.mesh:
            self._changes.all_meshes = True
            self._policy_epoch = {m: n + 1 for m, n in self._policy_epoch.items()}
        else:
            self._changes.meshes.add(res.mesh)
            if res.type in POLICY_SET:
                self._policy_epoch[res.mesh] = self._policy_epoch.get(res.mesh, 0) + 1
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
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._slice
        done = 0
        for member in list(self._members.values()):
            if loop.time() >= deadline:
                await asyncio.sleep(0)
                deadline = loop.time() + self._slice
            if member.left or not changes.touches(member.mesh):
                continue
            inputs = self._inputs(member)
            services = changed.get(member.mesh, frozenset())
            if (member.inputs is None or not inputs.same_as(member.inputs)
                    or (services and (member.read is None or member.read & services))):
                self._regenerate(member, inputs)
                done += 1
        self.rounds += 1
        return done

    def _changed_services(self, changes: _Changes) -> dict[str, frozenset[str]]:
        """Per touched mesh, the services whose endpoints or zones differ from the last
        round's."""
        meshes = {m.mesh for m in self._members.values() if changes.touches(m.mesh)}
        out = {}
        for mesh in meshes:
            new = self._state.shared_services(mesh)
            old = self._services.get(mesh, {})
            self._services[mesh] = new
            out[mesh] = frozenset(n for n in old.keys() | new.keys()
                                  if old.get(n) != new.get(n))
        return out

    # -- one proxy ----------------------------------------------------------------------

    def _inputs(self, member: Member, current: Resource | None = None) -> ProxyInputs:
        """The member's inputs now: the ones it holds while nothing they derive from
        changed (its Dataplane, its Mesh, the mesh's policies, the VIPs), else fresh."""
        registered = member.registered
        current = current or (self._state.get("Dataplane", registered.name, registered.mesh)
                              or registered)
        if current is not registered and same_document(current, registered):
            member.registered = current  # the state's copy, so the Dataplane is held once
        vips = self._vips.of(current.mesh)  # the same tuple while they are equal
        key = (current, self._state.get("Mesh", current.mesh),
               self._policy_epoch.get(current.mesh, 0), vips)
        if member.inputs is not None and _same(key, member.inputs_key):
            return member.inputs
        member.inputs_key = key
        return self._state.inputs(current, vip_outbounds(vips, current))

    def _regenerate(self, member: Member, inputs: ProxyInputs) -> None:
        services = self._state.shared_services(member.mesh)
        self._services.setdefault(member.mesh, services)
        generated, entries, read = self._shared.generate(inputs, services)
        member.inputs, member.read = inputs, read
        member.regenerations += 1
        self.regenerations += 1
        member.deliver(generated, entries)


def _same(a: tuple[object, ...], b: tuple[object, ...]) -> bool:
    """Equal element by element by identity (resources, tuples) or value (counters)."""
    return len(a) == len(b) and all(x is y or x == y for x, y in zip(a, b, strict=True))
