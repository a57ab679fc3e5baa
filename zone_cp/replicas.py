"""Zone CP replicas' records of themselves: a heartbeat and their sidecars' census.

Replicas of a zone CP on one PostgreSQL store each keep one ``ZoneCpReplica`` record
(``gossamer.model.zonereplica``), named after the replica's stable id
(``gossamer.election.replica``), so a restart takes its own record back.
``ReplicaRecords.run`` writes it every ``every`` seconds and, at most once per
``MIN_GAP``, whenever the CA's census of this replica's sidecars changes. It is the one
write every replica makes about the zone's CA, and it is only a count: keys, requests and
the zone's report are the leader's (``zone_cp.ca_keeper``).

Liveness is judged by the leader on its own clock (``Liveness``): a record is alive while
its ``reportedAt`` keeps changing; one first seen (a new leader) is credited with the age
its ``reportedAt`` gives on the leader's wall clock, so a takeover neither waits a whole
bound to count the live replicas nor takes a long-dead one for alive. After that, clock
skew between replicas changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from gossamer.errors import GossamerError
from gossamer.model.base import Resource
from gossamer.model.zonereplica import MAX_MESHES, ZoneCpReplicaSpec
from gossamer.model.zonetrust import ZoneTrustStatusSpec
from gossamer.resources import Action, ResourceManager

log = logging.getLogger(__name__)

RECORD_KIND = "ZoneCpReplica"
HEARTBEAT_EVERY = 5.0  # seconds between a replica's heartbeats
MIN_GAP = 1.0  # seconds at least between two writes of one replica's record
# A record that has not moved for this long is a dead replica's: its census no longer
# counts, and the leader starts the grace of its sidecars (``zone_cp.leftovers``).
DEAD_AFTER = 6 * HEARTBEAT_EVERY


def record_name(zone: str, replica: str) -> str:
    """``<zone>.<hash of the replica>``: a valid resource name whatever the replica id."""
    return f"{zone}.{hashlib.sha256(replica.encode()).hexdigest()[:12]}"


@dataclass
class _Seen:
    reported_at: float
    moved_at: float  # the observer's monotonic clock


class Liveness:
    """When each replica's record last moved, on the observer's clocks (pure)."""

    def __init__(self) -> None:
        self._seen: dict[str, _Seen] = {}

    def observe(self, records: Iterable[ZoneCpReplicaSpec], now: float, wall: float) -> None:
        """Note ``records`` as read at monotonic ``now`` and wall-clock ``wall``."""
        current = {}
        for rec in records:
            seen = self._seen.get(rec.replica)
            if seen is None:  # first sight: as old as its own stamp says, never younger
                seen = _Seen(rec.reported_at, now - max(0.0, wall - rec.reported_at))
            elif seen.reported_at != rec.reported_at:
                seen = _Seen(rec.reported_at, now)
            current[rec.replica] = seen
        self._seen = current

    def age(self, replica: str, now: float) -> float | None:
        """Seconds since ``replica``'s record last moved (None: no record seen)."""
        seen = self._seen.get(replica)
        return None if seen is None else now - seen.moved_at

    def dead(self, bound: float, now: float) -> list[str]:
        """The replicas whose record has not moved for ``bound`` seconds, sorted."""
        return sorted(r for r, s in self._seen.items() if now - s.moved_at >= bound)


class ReplicaRecords:
    """This replica's record (written by every replica) and the others' (read by the
    leader)."""

    def __init__(
        self,
        manager: ResourceManager,
        zone: str,
        replica: str,
        census: Callable[[], list[ZoneTrustStatusSpec]],
        every: float = HEARTBEAT_EVERY,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        """``clock`` times liveness; ``wall`` stamps the record (injectable for tests)."""
        self._manager = manager
        self.clock = clock
        self._wall = wall
        self.zone = zone
        self.replica = replica
        self._census = census
        self.every = every
        self.dead_after = DEAD_AFTER
        self.liveness = Liveness()
        self.changed = asyncio.Event()  # set by the CA when the census changes
        # Called when this replica's record had to be created again: the leader took
        # the replica for dead and removed its record, and maybe its sidecars' resources
        # (a replica cut off from the database for long); the registries store them again.
        self.on_revived: list[Callable[[], Awaitable[object]]] = []
        self._written = False

    def census_changed(self) -> None:
        self.changed.set()

    async def publish(self) -> None:
        spec = ZoneCpReplicaSpec(
            zone=self.zone,
            replica=self.replica,
            reported_at=self._wall(),
            trust=self._census()[:MAX_MESHES],  # beyond: uncounted in the report
        )
        applied = await self._manager.apply(
            Resource(type=RECORD_KIND, name=record_name(self.zone, self.replica), spec=spec)
        )
        revived = self._written and applied.action is Action.CREATED
        self._written = True
        if revived:
            log.warning(
                "zone %s: replica %s was taken for dead; storing its sidecars again",
                self.zone,
                self.replica,
            )
            for hook in self.on_revived:
                await hook()

    async def run(self) -> None:
        """Write the record now, then on every census change (at most once per
        ``MIN_GAP``) and every ``every`` seconds. A store failure is retried at the
        next beat: the record going stale is what a dead replica looks like."""
        while True:
            self.changed.clear()
            try:
                await self.publish()
            except GossamerError as exc:
                log.warning(
                    "zone %s: cannot write replica %s's record: %s",
                    self.zone,
                    self.replica,
                    exc.detail,
                )
            await asyncio.sleep(MIN_GAP)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(self.every - MIN_GAP, 0.0)):
                    await self.changed.wait()

    async def read(self) -> list[ZoneCpReplicaSpec]:
        """Every replica's record of this zone, noted in ``liveness``."""
        records = [
            r.spec
            for r in (await self._manager.list(RECORD_KIND)).items
            if isinstance(r.spec, ZoneCpReplicaSpec) and r.spec.zone == self.zone
        ]
        self.liveness.observe(records, self.clock(), self._wall())
        return records

    async def others(self) -> list[ZoneTrustStatusSpec]:
        """The censuses of the other replicas that are alive, every mesh."""
        records = await self.read()
        now = self.clock()
        return [
            status
            for rec in records
            if rec.replica != self.replica
            and (self.liveness.age(rec.replica, now) or 0.0) < self.dead_after
            for status in rec.trust
        ]
