"""Zone insights in the store, so every global replica answers ``inspect zones`` alike.

Each replica counts its own streams in memory (``global_cp.insights``) and
``InsightPublisher`` stores that view as one ``ZoneInsight`` per zone and replica. The
write rate is bounded: a pass runs when a stream comes or goes (at most once per
``MIN_GAP``) or every ``PUBLISH_INTERVAL``, and writes only the zones whose view changed,
or whose record must be refreshed so it does not go stale (a zone with a live stream,
every ``PUBLISH_INTERVAL``): at most zones / ``MIN_GAP`` writes a second per replica,
and a Put of unchanged content wakes no watcher.

Readers (``merged``) combine every replica's record: counts add up, a zone is online
while a record fresher than ``STALE_AFTER`` has a stream (a replica killed with its
streams leaves a record that goes stale, so the zone turns Offline within that bound),
times and the version come from the latest. ``merged`` is pure, so the same records give
the same answer on every replica; the API reads only the stored records, so a replica's
own streams show there after its next pass (within ``MIN_GAP`` of a stream coming or
going), like everyone else's.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Iterable

from global_cp.insights import Insights, ZoneInsight
from gossamer.errors import GossamerError
from gossamer.model.base import Resource
from gossamer.model.labels import ZONE_LABEL
from gossamer.model.zoneinsight import Counts, ZoneInsightSpec
from gossamer.store.base import Delete, ListQuery, Put, Store
from sync.outcomes import Counts as Tallied
from sync.outcomes import Outcome

log = logging.getLogger(__name__)

PUBLISH_INTERVAL = 5.0
MIN_GAP = 1.0
STALE_AFTER = 3 * PUBLISH_INTERVAL
# A replica gone this long (decommissioned, its data dir lost) has its records removed
# by the leader (``InsightJanitor``); one that restarts on its data dir takes its own
# record back (it is named by the stable replica id).
RETAIN = 3600.0
PRUNE_EVERY = 300.0


def record_name(zone: str, replica: str) -> str:
    """``<zone>.<hash of the replica>``: a valid resource name whatever the replica id."""
    return f"{zone}.{hashlib.sha256(replica.encode()).hexdigest()[:12]}"


def to_spec(z: ZoneInsight, replica: str, now: float) -> ZoneInsightSpec:
    counts = {t: Counts(**{o.value: getattr(z.tally.of(t), o.value) for o in Outcome})
              for t in list(z.tally)[:64]}
    return ZoneInsightSpec(zone=z.zone, replica=replica, reported_at=now, streams=z.streams,
                           connected_at=z.connected_at, disconnected_at=z.disconnected_at,
                           last_update=z.last_update, version=z.version[:128],
                           last_error=z.last_error[:2000], by_type=counts)


def merged(records: Iterable[ZoneInsightSpec], now: float) -> dict[str, ZoneInsight]:
    """Every replica's records combined into one insight per zone (see the module)."""
    by_zone: dict[str, list[ZoneInsightSpec]] = {}
    for r in sorted(records, key=lambda r: (r.reported_at, r.replica)):  # latest last
        by_zone.setdefault(r.zone, []).append(r)
    return {zone: _merge_zone(zone, rs, now) for zone, rs in by_zone.items()}


def _merge_zone(zone: str, records: list[ZoneInsightSpec], now: float) -> ZoneInsight:
    z = ZoneInsight(zone)
    live = [r for r in records if r.streams and now - r.reported_at <= STALE_AFTER]
    z.streams = sum(r.streams for r in live)
    # Online: since the earliest live stream; offline: when it was last connected.
    since = [r.connected_at for r in (live or records) if r.connected_at is not None]
    z.connected_at = (min(since) if live else max(since)) if since else None
    for r in records:
        z.disconnected_at = _latest(z.disconnected_at, r.disconnected_at)
        z.last_update = _latest(z.last_update, r.last_update)
        z.version = r.version or z.version
        z.last_error = r.last_error or z.last_error
        for type_url, c in r.by_type.items():
            z.tally.add_counts(type_url, Tallied(**c.model_dump()))
    return z


def _latest(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


async def stored_insights(store: Store, now: float | None = None, *,
                          own: tuple[str, Insights] | None = None) -> dict[str, ZoneInsight]:
    """Every replica's records merged. With ``own`` (this replica and its insights), this
    replica's live view stands in for its stored record: its own streams show at once,
    but it answers unlike the other replicas until its next pass is stored, so the API
    and ``/_check`` do not pass it (``global_cp.app``)."""
    now = time.time() if now is None else now
    page = await store.list(ListQuery("ZoneInsight"))
    specs = [r.spec for r in page.items if isinstance(r.spec, ZoneInsightSpec)]
    if own is not None:
        replica, insights = own
        specs = [s for s in specs if s.replica != replica]
        specs += [to_spec(z, replica, now) for z in insights.all()]
    return merged(specs, now)


class InsightPublisher:
    """Stores this replica's view of each zone (see the module)."""

    def __init__(self, store: Store, insights: Insights, replica: str,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._insights = insights
        self._replica = replica
        self._clock = clock
        self._published: dict[str, tuple[ZoneInsightSpec, float]] = {}  # zone -> spec, at

    async def run(self) -> None:
        while True:
            self._insights.changed.clear()
            try:
                await self.publish()
            except GossamerError as exc:  # the store: the next pass writes it
                log.warning("zone insights not stored: %s", exc.detail)
            await asyncio.sleep(MIN_GAP)  # the bound on the write rate
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(PUBLISH_INTERVAL - MIN_GAP):
                    await self._insights.changed.wait()

    async def publish(self) -> int:
        """One pass: store the zones whose view changed or needs refreshing; how many."""
        now = self._clock()
        ops, specs = [], {}
        for z in self._insights.all():
            spec = to_spec(z, self._replica, now)
            last = self._published.get(z.zone)
            if last is not None:
                was, at = last
                same = was.model_copy(update={"reported_at": now}) == spec
                if same and (not z.streams or now - at < PUBLISH_INTERVAL):
                    continue
            ops.append(Put(Resource(type="ZoneInsight", name=record_name(z.zone, self._replica),
                                    labels={ZONE_LABEL: z.zone}, spec=spec)))
            specs[z.zone] = spec
        if ops:
            await self._store.write(ops)
        # Only once stored: a write refused (the database down) is made again next pass,
        # not taken for done, which left a zone with no stream here stale for good.
        self._published.update((zone, (spec, now)) for zone, spec in specs.items())
        return len(ops)


async def prune(store: Store, now: float) -> int:
    """Delete the records of replicas silent for longer than ``RETAIN``; how many."""
    page = await store.list(ListQuery("ZoneInsight"))
    ops = [Delete("ZoneInsight", r.name, expected_version=r.meta.version, missing_ok=True)
           for r in page.items
           if isinstance(r.spec, ZoneInsightSpec) and now - r.spec.reported_at > RETAIN]
    if ops:
        await store.write(ops)
    return len(ops)


class InsightJanitor:
    """Leader-only: prunes the records of replicas that are gone for good."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    async def run(self) -> None:
        while True:
            try:
                removed = await prune(self._store, self._clock())
            except GossamerError as exc:  # the store, or the lease lost: next round
                log.warning("stale zone insights not pruned: %s", exc.detail)
            else:
                if removed:
                    log.info("removed %d zone insights of replicas gone for %gs", removed,
                             RETAIN)
            await asyncio.sleep(PRUNE_EVERY)
