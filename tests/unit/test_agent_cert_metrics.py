"""The zone CP's certificate metrics, read from the registry at scrape time."""

from __future__ import annotations

import datetime as dt

from prometheus_client import CollectorRegistry

from gossamer.pki.certs import new_leaf
from tests.unit.test_agent_registry import ROOT, registry, sidecar
from zone_cp.cert_metrics import CertificateCollector
from zone_cp.cert_status import parse_status

T0 = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)
EXPIRY = "gossamer_dataplane_certificate_expiry_timestamp_seconds"


def chain(issued: dt.datetime, valid_for: dt.timedelta) -> bytes:
    return new_leaf(ROOT, "x", issued, valid_for).cert_pem() + ROOT.cert_pem()


async def test_expiry_per_dataplane_and_counts_per_mesh() -> None:
    reg, manager = await registry()
    now = T0 + 20 * HOUR
    metrics = CollectorRegistry()
    metrics.register(CertificateCollector(reg, clock=lambda: now))
    fresh = await sidecar(reg, manager, "fresh")
    overdue = await sidecar(reg, manager, "overdue")
    expired = await sidecar(reg, manager, "expired")
    await sidecar(reg, manager, "pending")  # no report yet: no expiry, counted nowhere
    other = await sidecar(reg, manager, "o", mesh="other")
    reg.reported(fresh, parse_status(chain(T0 + 19 * HOUR, 24 * HOUR), "", now))
    reg.reported(overdue, parse_status(chain(T0, 24 * HOUR), "", now))
    reg.reported(expired, parse_status(chain(T0 - 10 * HOUR, 24 * HOUR), "", now))
    reg.reported(other, parse_status(chain(T0 + 19 * HOUR, 24 * HOUR), "", now))

    def value(name: str, **labels: str) -> float | None:
        return metrics.get_sample_value(name, labels)

    assert value(EXPIRY, mesh="default", dataplane="fresh") == (
        T0 + 43 * HOUR).timestamp()
    assert value(EXPIRY, mesh="default", dataplane="expired") == (T0 + 14 * HOUR).timestamp()
    assert value(EXPIRY, mesh="default", dataplane="pending") is None
    assert value("gossamer_dataplane_certificates_expiring", mesh="default") == 1
    assert value("gossamer_dataplane_certificates_expired", mesh="default") == 1
    assert value("gossamer_dataplane_certificates_expiring", mesh="other") == 0
    assert value("gossamer_dataplane_certificates_expired", mesh="other") == 0

    # A dataplane that goes takes its series with it.
    await reg.unregister(expired)
    assert value(EXPIRY, mesh="default", dataplane="expired") is None
    assert value("gossamer_dataplane_certificates_expired", mesh="default") == 0
    await reg.unregister(other)
    assert value("gossamer_dataplane_certificates_expiring", mesh="other") is None
