"""``sync.deliveries`` as Prometheus metric families, for any control plane's collector.

The zone CP exports its Envoys' push latency with these (``zone_cp.xds_metrics``), the
global its zones' sync lag (``DeliveryCollector`` on ``global_cp.insights``): the same
measurement, response sent to answer received, under different names and labels.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from sync.deliveries import Deliveries, Histogram


def histogram_family(name: str, doc: str, label: str,
                     histograms: dict[str, Histogram]) -> HistogramMetricFamily:
    """Histograms by label value as one family, one series per value."""
    family = HistogramMetricFamily(name, doc, labels=[label])
    for value, h in sorted(histograms.items()):
        family.add_metric([value], h.buckets(), h.total)
    return family


def nacks_family(name: str, label: str, deliveries: Deliveries) -> CounterMetricFamily:
    family = CounterMetricFamily(name, "Responses the subscriber NACKed, by type",
                                 labels=[label, "type"])
    for (value, type_url), n in sorted(deliveries.nacks.items()):
        family.add_metric([value, type_url], n)
    return family


class DeliveryCollector(Collector):
    """One ``Deliveries``' latency histogram (``name``) and NACK counter
    (``<nacks>_total``), read at scrape time."""

    def __init__(self, deliveries: Deliveries, name: str, doc: str, label: str,
                 nacks: str) -> None:
        self._deliveries = deliveries
        self._name, self._doc, self._label, self._nacks = name, doc, label, nacks

    def collect(self) -> Iterator[Any]:
        yield histogram_family(self._name, self._doc, self._label, self._deliveries.latency)
        yield nacks_family(self._nacks, self._label, self._deliveries)
