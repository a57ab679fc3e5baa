"""The zone CP's xDS and certificate metrics, read from the live parts at scrape time.

A collector, like ``zone_cp.cert_metrics``: nothing is kept up to date on the hot path
except what only the path can see (``sync.deliveries.Deliveries``, fed by the ADS
streams' observers); the rest is read from the ADS server, its fleet and the agent
registry when Prometheus scrapes, so no series outlives what it describes.

* ``gossamer_xds_delivery_seconds{proxy}`` (histogram) — from a response leaving the
  zone CP to the Envoy's ACK or NACK of it: the xDS push latency as the proxy lives it
  (``proxy`` is ``sidecar`` or ``ingress``);
* ``gossamer_xds_nacks_total{proxy,type}`` — NACKs, by resource type;
* ``gossamer_xds_proxies_connected{proxy}`` — Envoys with a live ADS stream;
* ``gossamer_xds_fleet_members`` — sidecars the fleet regenerates;
  ``gossamer_xds_regeneration_rounds_total`` and ``gossamer_xds_regenerations_total`` —
  the fleet's rounds and per-proxy regenerations (``zone_cp.fleet``);
* ``gossamer_dataplane_certificate_remaining_seconds{mesh}`` (gauge histogram) — how long
  each live sidecar's workload certificate has left, as last reported by its agent
  (expired ones in the ``le="0"`` bucket).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
)
from prometheus_client.registry import Collector

from sync.deliveries import Histogram
from sync.delivery_metrics import histogram_family, nacks_family
from zone_cp.agents import AgentRegistry
from zone_cp.xds import AdsServer

HOUR = 3600.0
DAY = 24 * HOUR
CERT_BUCKETS = (0.0, HOUR, 6 * HOUR, 12 * HOUR, DAY, 2 * DAY, 7 * DAY, 30 * DAY, 90 * DAY,
                365 * DAY)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class XdsCollector(Collector):
    def __init__(self, ads: AdsServer, agents: AgentRegistry,
                 clock: Callable[[], dt.datetime] = utc_now) -> None:
        self._ads = ads
        self._agents = agents
        self._clock = clock

    def collect(self) -> Iterator[Any]:
        yield histogram_family(
            "gossamer_xds_delivery_seconds",
            "From an xDS response leaving the zone CP to the Envoy's ACK or NACK of it",
            "proxy", self._ads.deliveries.latency)
        yield nacks_family("gossamer_xds_nacks", "proxy", self._ads.deliveries)
        yield self._connected()
        fleet = self._ads.fleet
        yield GaugeMetricFamily("gossamer_xds_fleet_members",
                                "Sidecars the fleet regenerates on changes", value=len(fleet))
        yield CounterMetricFamily("gossamer_xds_regeneration_rounds",
                                  "Regeneration rounds the fleet ran", value=fleet.rounds)
        yield CounterMetricFamily("gossamer_xds_regenerations",
                                  "Proxies regenerated, over every round",
                                  value=fleet.regenerations)
        yield self._certificates()

    def _connected(self) -> GaugeMetricFamily:
        counts = {"sidecar": 0, "ingress": 0}
        for insight in list(self._ads.insights.values()):
            if insight.connected:
                counts["ingress" if insight.node_id.startswith("ingress:") else "sidecar"] += 1
        family = GaugeMetricFamily("gossamer_xds_proxies_connected",
                                   "Envoys with a live ADS stream", labels=["proxy"])
        for proxy, n in counts.items():
            family.add_metric([proxy], n)
        return family

    def _certificates(self) -> GaugeHistogramMetricFamily:
        now = self._clock()
        per_mesh: dict[str, Histogram] = {}
        for session in list(self._agents.sessions.values()):
            cert = session.certificate
            if cert is None:
                continue
            left = (cert.not_after - now).total_seconds()
            per_mesh.setdefault(session.mesh, Histogram(CERT_BUCKETS)).observe(max(0.0, left))
        family = GaugeHistogramMetricFamily(
            "gossamer_dataplane_certificate_remaining_seconds",
            "How long live sidecars' workload certificates have left", labels=["mesh"])
        for mesh, h in sorted(per_mesh.items()):
            family.add_metric([mesh], h.buckets(), h.total)
        return family
