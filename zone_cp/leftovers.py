"""What a restarted zone CP does with the resources its previous run's agents left stored.

A registered Dataplane (or ZoneIngress) is removed when its agent's stream ends while
the control plane keeps running, but *not* when the stream ends because the control
plane itself stops (``stopping``): the Envoys keep serving meanwhile, and deleting their
resources would reach the global and every other zone as a lost route. After a start,
``keep_then_expire`` gives the resources a previous run left behind (``leftovers``) a
grace period for their agents to register again (which replaces them, as any
re-registration does) and then removes those still without a session (``expire``): a
sidecar that died with the CP does not linger. Replicas of a zone CP on one store stamp
the resources of their sessions with their stable replica id (``CP_REPLICA_LABEL``) and
expire only their own, never those of a sidecar connected to another replica. Only
agent-registered, zone-local resources are touched; one applied by hand or synced from
elsewhere is not the registries'. Each registry (``AgentRegistry`` for Dataplanes,
``IngressRegistry``) implements ``Lifetime``; this module holds what they share.

A replica that dies for good never restarts to expire its own: ``DeadReplicas`` runs on
the zone's leader and does it for it. A replica is dead once its record
(``zone_cp.replicas``) has not moved for ``dead_after`` seconds; the leader then notes
the resources stamped with it and, ``grace`` seconds later, deletes those still stamped
with it at the version it noted. An agent that moved to another replica in between
re-registered there (relabelled, a new version) and is never removed; nor is anything
if the replica came back meanwhile. The record itself goes once nothing carries its
stamp any more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from gossamer.errors import Conflict, GossamerError, NotFound
from gossamer.model.base import Resource
from gossamer.model.labels import AGENT_LABEL, AGENT_VALUE, CP_REPLICA_LABEL, ORIGIN_LABEL
from gossamer.resources import ResourceManager
from zone_cp.replicas import RECORD_KIND, ReplicaRecords, record_name

log = logging.getLogger(__name__)

# How long a restarted zone CP keeps a previous run's Dataplanes and ZoneIngresses for
# their agents to register again (agents reconnect within 45 s, see docs/decisions.md).
LEFTOVER_GRACE = 60.0


class Lifetime(Protocol):
    """A registry's part in the control plane's own lifetime."""

    def stopping(self) -> None:
        """Sessions that end from now on leave their resources stored."""

    async def leftovers(self) -> list[tuple[str, str]]:
        """The (mesh, name) of stored resources of this registry with no live session."""
        ...

    async def expire(self, keys: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """Remove those of ``keys`` whose agent has still not registered; which were."""
        ...

    async def restore(self) -> list[str]:
        """Store again the resources of live sessions that are gone from the store (this
        replica was taken for dead); the node ids restored."""
        ...


def leftover_keys(stored: Iterable[Resource], live: Collection[str],
                  node_id: Callable[[Resource], str],
                  owned: Callable[[Resource], bool]) -> list[tuple[str, str]]:
    """The (mesh, name) of each stored resource ``owned`` by a registry (zone-local and
    agent-registered) whose node id has no live session, sorted."""
    return sorted((r.mesh, r.name) for r in stored
                  if ORIGIN_LABEL not in r.labels and owned(r) and node_id(r) not in live)


def registered_by_agent(res: Resource) -> bool:
    return res.labels.get(AGENT_LABEL) == AGENT_VALUE


def stamped(labels: Mapping[str, str], replica: str) -> dict[str, str]:
    """``labels`` naming ``replica`` as the holder of the session (none when ""): zone CP
    replicas on one store each expire only the leftovers of their own sessions."""
    return {**labels, CP_REPLICA_LABEL: replica} if replica else dict(labels)


def ours(res: Resource, replica: str) -> bool:
    """Whether ``res`` was registered through ``replica`` (or by a CP without replicas:
    no label), so that its expiry is this replica's to decide. A resource whose agent
    moved to another replica carries that replica's name and is never expired here."""
    return res.labels.get(CP_REPLICA_LABEL, "") in ("", replica)


async def keep_then_expire(registries: Mapping[str, Lifetime], grace: float) -> None:
    """After a start: wait ``grace`` seconds for the agents of the resources a previous
    run left stored (per kind, in ``registries``), then remove those whose agent did not
    come back. A store failure is logged: the next run expires them."""
    found = {kind: await registry.leftovers() for kind, registry in registries.items()}
    if not any(found.values()):
        return
    log.info("keeping %d resources of the previous run for %gs while their agents "
             "come back", sum(map(len, found.values())), grace)
    await asyncio.sleep(grace)
    try:
        for kind, keys in found.items():
            await registries[kind].expire(keys)
    except GossamerError as exc:  # a store failure: the next run expires them
        log.warning("cannot remove the previous run's leftovers: %s", exc.detail)


# The kinds an agent registers through a replica, stamped with it.
STAMPED_KINDS = ("Dataplane", "ZoneIngress")
Key = tuple[str, str, str]  # kind, mesh, name


@dataclass
class _Dying:
    noted_at: float                                     # monotonic
    versions: dict[Key, int] = field(default_factory=dict)


class DeadReplicas:
    """The leader's expiry of the sidecars and ingresses of replicas that died for good."""

    def __init__(self, leader: ResourceManager, records: ReplicaRecords,
                 grace: float = LEFTOVER_GRACE) -> None:
        """``leader``: the store view the zone's lease fences; ``grace``: how long the
        agents of a dead replica have to register elsewhere (the zone's
        ``agent_grace``)."""
        self._manager = leader
        self._records = records
        self.grace = grace
        self._dying: dict[str, _Dying] = {}

    async def run(self) -> None:
        """One term: a pass every heartbeat until cancelled; a store failure (or the end
        of the term) is retried at the next."""
        self._dying.clear()  # a new term starts its graces afresh
        while True:
            try:
                await self.sweep()
            except GossamerError as exc:
                log.warning("cannot expire dead replicas' sidecars: %s", exc.detail)
            await asyncio.sleep(min(self._records.every, self.grace, 5.0))

    async def sweep(self) -> dict[str, list[Key]]:
        """Note newly dead replicas, expire those whose grace ended; what was removed,
        by replica. Timed on the records' clock."""
        await self._records.read()
        now = self._records.clock()
        dead = set(self._records.liveness.dead(self._records.dead_after, now))
        dead.discard(self._records.replica)
        for back in set(self._dying) - dead:
            log.info("zone CP replica %s is alive again: its sidecars stay", back)
            del self._dying[back]
        removed: dict[str, list[Key]] = {}
        for replica in sorted(dead):
            dying = self._dying.get(replica)
            if dying is None:
                self._dying[replica] = _Dying(now, await self._stamped(replica))
                log.warning("zone CP replica %s is silent: its %d sidecars and ingresses "
                            "are removed in %gs unless their agents register elsewhere",
                            replica, len(self._dying[replica].versions), self.grace)
            elif now - dying.noted_at >= self.grace:
                removed[replica] = await self._expire(replica, dying)
                del self._dying[replica]
        return removed

    async def _stamped(self, replica: str) -> dict[Key, int]:
        found: dict[Key, int] = {}
        for kind in STAMPED_KINDS:
            page = await self._manager.list(kind, labels={CP_REPLICA_LABEL: replica})
            found |= {(kind, r.mesh, r.name): r.meta.version for r in page.items
                      if ORIGIN_LABEL not in r.labels}
        return found

    async def _expire(self, replica: str, dying: _Dying) -> list[Key]:
        """Delete what still carries ``replica``'s stamp at the noted version."""
        removed = []
        for key, version in sorted(dying.versions.items()):
            kind, mesh, name = key
            with contextlib.suppress(NotFound, Conflict):  # gone, or re-registered
                await self._manager.delete(kind, name, mesh, expected_version=version)
                removed.append(key)
        if removed:
            log.info("removed %d sidecars and ingresses of dead zone CP replica %s: %s",
                     len(removed), replica, ", ".join(f"{k}/{m}/{n}" for k, m, n in removed))
        if not await self._stamped(replica):
            with contextlib.suppress(NotFound):
                await self._manager.delete(RECORD_KIND, record_name(
                    self._records.zone, replica))
        return removed
