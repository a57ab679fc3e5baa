"""Zone insights stored per replica and merged: the same answer from the same records.

``merged`` adds up every replica's counts, calls a zone online only while a fresh record
has a stream, and forgets a dead replica's streams once its record is stale. The
publisher writes only what changed, plus a refresh of live zones, so its write rate is
bounded whatever the traffic.
"""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from global_cp.insight_store import (
    RETAIN,
    STALE_AFTER,
    InsightPublisher,
    merged,
    prune,
    stored_insights,
)
from global_cp.insights import Insights
from gossamer.errors import StoreUnavailable
from gossamer.model.zoneinsight import Counts, ZoneInsightSpec
from gossamer.store.base import ListQuery
from gossamer.store.memory import MemoryStore
from sync.outcomes import Outcome

URL = "gossamer.io/MeshTimeout"


def record(replica: str, at: float, streams: int, sent: int) -> ZoneInsightSpec:
    return ZoneInsightSpec(zone="east", replica=replica, reported_at=at, streams=streams,
                           connected_at=at - 5 if streams else None, last_update=at,
                           version="1.0", by_type={URL: Counts(sent=sent)})


def test_counts_add_up_and_a_fresh_stream_makes_the_zone_online() -> None:
    z = merged([record("a", 100.0, 1, 3), record("b", 100.0, 0, 4)], now=101.0)["east"]
    assert z.online and z.streams == 1 and z.sent[URL] == 7 and z.connected_at == 95.0


def test_a_dead_replicas_stale_record_does_not_keep_the_zone_online() -> None:
    records = [record("dead", 100.0, 1, 3)]
    assert merged(records, now=100.0 + STALE_AFTER)["east"].online
    z = merged(records, now=100.0 + STALE_AFTER + 0.1)["east"]
    assert not z.online and z.connected_at == 95.0 and z.sent[URL] == 3


def test_the_merge_does_not_depend_on_the_order_of_the_records() -> None:
    records = [record("a", 100.0, 1, 3), record("b", 99.0, 2, 4), record("c", 90.0, 0, 1)]
    one = merged(records, now=101.0)["east"].to_json()
    assert merged(list(reversed(records)), now=101.0)["east"].to_json() == one


async def test_the_publisher_writes_changes_and_refreshes_live_zones_only() -> None:
    store, clock = MemoryStore(), [1000.0]
    insights = Insights(CollectorRegistry(), clock=lambda: clock[0])
    publisher = InsightPublisher(store, insights, "replica-a", clock=lambda: clock[0])
    insights.connected("east", "1.0")
    insights.connected("west", "1.0")
    insights.disconnected("west")
    assert await publisher.publish() == 2
    assert await publisher.publish() == 0  # nothing changed, nothing due
    insights.count("east", URL, Outcome.SENT)
    assert await publisher.publish() == 1
    clock[0] += 6.0  # east is live: refreshed; west is offline: left as it is
    assert await publisher.publish() == 1
    view = await stored_insights(store, now=clock[0])
    assert view["east"].online and not view["west"].online and view["east"].sent[URL] == 1
    assert (await store.list(ListQuery("ZoneInsight"))).total == 2


async def test_the_records_of_replicas_gone_for_good_are_pruned_and_no_others() -> None:
    store, clock = MemoryStore(), [1000.0]
    insights = Insights(CollectorRegistry(), clock=lambda: clock[0])
    insights.connected("east", "1.0")
    gone = InsightPublisher(store, insights, "gone", clock=lambda: clock[0])
    assert await gone.publish() == 1
    clock[0] += RETAIN
    alive = InsightPublisher(store, insights, "alive", clock=lambda: clock[0])
    assert await alive.publish() == 1
    assert await prune(store, clock[0]) == 0  # exactly RETAIN old: kept
    clock[0] += 1.0
    assert await prune(store, clock[0]) == 1
    left = (await store.list(ListQuery("ZoneInsight"))).items
    assert [r.spec.replica for r in left] == ["alive"]  # type: ignore[union-attr]


class RefusingOnce(MemoryStore):
    """A memory store whose next write fails as a store that is down does."""

    refuse = False

    async def write(self, ops):  # type: ignore[no-untyped-def]
        if self.refuse:
            self.refuse = False
            raise StoreUnavailable("postgres is unavailable")
        return await super().write(ops)


async def test_a_pass_the_store_refused_is_written_again_by_the_next() -> None:
    """An offline zone is not refreshed, so a refused write taken for done would leave
    its record stale at every other replica for good (found by tests/integration/
    test_chaos.py, a database outage while a zone moved between replicas)."""
    store, clock = RefusingOnce(), [1000.0]
    insights = Insights(CollectorRegistry(), clock=lambda: clock[0])
    publisher = InsightPublisher(store, insights, "replica-a", clock=lambda: clock[0])
    insights.connected("west", "1.0")
    assert await publisher.publish() == 1
    insights.disconnected("west", "the peer closed the stream")
    store.refuse = True
    with pytest.raises(StoreUnavailable):
        await publisher.publish()
    assert await publisher.publish() == 1
    view = await stored_insights(store, now=clock[0])
    assert not view["west"].online and view["west"].last_error == "the peer closed the stream"
