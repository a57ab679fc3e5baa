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
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Protocol

from gossamer.errors import GossamerError
from gossamer.model.base import Resource
from gossamer.model.labels import AGENT_LABEL, AGENT_VALUE, CP_REPLICA_LABEL, ORIGIN_LABEL

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
