"""The numbers the fleet benchmark reports: percentiles, a histogram's quantile from two
Prometheus scrapes, a process's resident memory and CPU time. Pure except ``rss_kib``
and ``cpu_seconds`` (read /proc).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

Buckets = dict[float, float]  # upper bound -> cumulative count


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by nearest rank; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summary_ms(seconds: Sequence[float]) -> dict[str, float | int]:
    """p50 and p99 in milliseconds (what the issue's JSON carries), max and the count."""
    return {"p50_ms": round(percentile(seconds, 50) * 1000, 1),
            "p99_ms": round(percentile(seconds, 99) * 1000, 1),
            "max_ms": round(max(seconds, default=math.nan) * 1000, 1), "n": len(seconds)}


def histogram(text: str, name: str) -> Buckets:
    """The cumulative buckets of histogram ``name`` in a Prometheus text scrape."""
    out: Buckets = {}
    for family in text_string_to_metric_families(text):
        if family.name != name:
            continue
        for sample in family.samples:
            if sample.name == f"{name}_bucket":
                out[float(sample.labels["le"])] = sample.value
    return out


def added(*scrapes: Buckets) -> Buckets:
    """Buckets summed over several processes (the same bounds)."""
    out: Buckets = {}
    for buckets in scrapes:
        for bound, count in buckets.items():
            out[bound] = out.get(bound, 0.0) + count
    return out


def between(before: Buckets, after: Buckets) -> Buckets:
    """What was observed between two scrapes."""
    return {bound: count - before.get(bound, 0.0) for bound, count in after.items()}


def quantile(buckets: Buckets, q: float) -> float:
    """Prometheus' ``histogram_quantile``: linear within the bucket holding rank ``q``
    (0-1); the largest finite bound if it falls in +Inf; NaN with no observations."""
    bounds = sorted(buckets)
    total = buckets.get(math.inf, buckets[bounds[-1]] if bounds else 0.0)
    if total <= 0:
        return math.nan
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def rss_kib(pid: int) -> int:
    """Resident memory of process ``pid`` (VmRSS), KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise ValueError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int) -> float:
    """CPU time (user and system) process ``pid`` has used, seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
