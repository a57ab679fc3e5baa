"""The zone CP's ``gossamer_sync_*`` metrics: the sync with the global, per replica.

Only the replica holding the zone's lease runs the sync (``zone_cp.app``); every replica
exports the same series, so a dashboard summing them over a zone's replicas counts the
zone's one link, and one that looks at a replica sees whether it is the one syncing.
Each series carries ``role`` (``leader``, ``follower`` or ``candidate``: the replica's
role in the zone's lease, ``gossamer_leader{lease="zone"}``); a follower exports its
sync as idle: ``gossamer_sync_active`` 0 and 0 streams. Read at scrape time from the
sync client's ``SyncStatus`` and the election, like ``zone_cp.xds_metrics``.

* ``gossamer_sync_active{zone,role}`` — 1 while this replica runs the sync;
* ``gossamer_sync_streams{zone,role}`` — its streams to the global that the global
  admitted (2 when in sync: one each way);
* ``gossamer_sync_connected{zone,role}`` — 1 while the link is in sync;
* ``gossamer_sync_dial_attempts_total{zone,role}`` — dials of the global, every term;
* ``gossamer_sync_applied_total{zone,role}`` — updates from the global written to the
  zone's store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from zone_cp.sync_client import SyncStatus


class SyncCollector(Collector):
    def __init__(
        self, zone: str, status: Callable[[], SyncStatus], role: Callable[[], str]
    ) -> None:
        """``status``: the sync client's status now; ``role``: the replica's role in
        the zone's lease now (``gossamer.election.core.Role``'s value)."""
        self._zone = zone
        self._status = status
        self._role = role

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        status, labels = self._status(), [self._zone, self._role()]
        names = ["zone", "role"]
        rows: list[tuple[type[GaugeMetricFamily | CounterMetricFamily], str, str, float]] = [
            (
                GaugeMetricFamily,
                "gossamer_sync_active",
                "1 while this zone CP replica runs "
                "the sync with the global (it holds the zone's lease)",
                float(status.running),
            ),
            (
                GaugeMetricFamily,
                "gossamer_sync_streams",
                "Streams to the global admitted and live on this replica (0 on a follower)",
                float(status.streams if status.running else 0),
            ),
            (
                GaugeMetricFamily,
                "gossamer_sync_connected",
                "1 while this replica's link to the global is in sync",
                float(status.running and status.connected),
            ),
            (
                CounterMetricFamily,
                "gossamer_sync_dial_attempts",
                "Dials of the global by this replica",
                float(status.attempts),
            ),
            (
                CounterMetricFamily,
                "gossamer_sync_applied",
                "Updates from the global this replica wrote to the zone's store",
                float(status.applied),
            ),
        ]
        for family_type, name, doc, value in rows:
            family = family_type(name, doc, labels=names)
            family.add_metric(labels, value)
            yield family
