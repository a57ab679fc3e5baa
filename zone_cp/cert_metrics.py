"""Prometheus metrics for the sidecars' workload certificates, read at scrape time.

A collector rather than gauges kept up to date: every scrape reads the live sessions of
the ``AgentRegistry``, so a dataplane's series disappears the moment its session ends and
nothing can drift out of step with the registry. What counts is what each sidecar last
reported it serves (``zone_cp.cert_status``):

* ``gossamer_dataplane_certificate_expiry_timestamp_seconds{mesh,dataplane}`` — when it
  expires (Unix time);
* ``gossamer_dataplane_certificates_expiring{mesh}`` — how many are past the point where
  their agent should have renewed them (two thirds of the lifetime, plus a grace) but have
  not expired yet;
* ``gossamer_dataplane_certificates_expired{mesh}`` — how many have expired.

The two counts have a series for every mesh with a live sidecar, zero included, so an
alert can tell "none" from "no data".
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from zone_cp.agents import AgentRegistry
from zone_cp.cert_status import Health


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class CertificateCollector(Collector):
    def __init__(self, agents: AgentRegistry,
                 clock: Callable[[], dt.datetime] = utc_now) -> None:
        self._agents = agents
        self._clock = clock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = self._clock()
        expiry = GaugeMetricFamily(
            "gossamer_dataplane_certificate_expiry_timestamp_seconds",
            "When each dataplane's workload certificate expires (Unix time)",
            labels=["mesh", "dataplane"])
        health: Counter[tuple[str, Health]] = Counter()
        meshes = set()
        for session in list(self._agents.sessions.values()):
            meshes.add(session.mesh)
            cert, state = session.certificate, session.health(now)
            if cert is None or state is None:
                continue
            expiry.add_metric([session.mesh, session.name], cert.not_after.timestamp())
            health[session.mesh, state] += 1
        yield expiry
        for state, name, doc in (
                (Health.EXPIRING, "gossamer_dataplane_certificates_expiring",
                 "Dataplane certificates past their renewal time, not yet expired"),
                (Health.EXPIRED, "gossamer_dataplane_certificates_expired",
                 "Dataplane certificates that have expired")):
            family = GaugeMetricFamily(name, doc, labels=["mesh"])
            for mesh in sorted(meshes):
                family.add_metric([mesh], health[mesh, state])
            yield family
