"""Prometheus metrics for the sidecars' workload certificates, read at scrape time.

A collector rather than gauges kept up to date: every scrape reads the live sessions of
the ``AgentRegistry``, so a dataplane's series disappears the moment its session ends and
nothing can drift out of step with the registry.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from zone_cp.agents import AgentRegistry


class CertificateCollector(Collector):
    def __init__(self, agents: AgentRegistry, clock: Callable[[], float] = time.time) -> None:
        self._agents = agents
        self._clock = clock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        expiry = GaugeMetricFamily(
            "gossamer_dataplane_certificate_expiry_timestamp_seconds",
            "When each dataplane's workload certificate expires (Unix time)",
            labels=["mesh", "dataplane"])
        for session in list(self._agents.sessions.values()):
            if session.cert_expiry is not None:
                expiry.add_metric([session.mesh, session.name], session.cert_expiry.timestamp())
        yield expiry
