"""In-process control planes for integration tests and benchmarks: a global and zones
wired over real gRPC with TLS on loopback, each with its own store and data directory.

Also what those tests observe them with: ``scrape`` (the global's Prometheus
``/metrics``) and ``span_recorder`` (the OpenTelemetry spans of this process). Waiting on
a condition is ``tests.waiting.eventually``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import httpx
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from global_cp.app import GlobalControlPlane
from gossamer.settings import GlobalSettings, ZoneSettings
from zone_cp.app import ZoneControlPlane

T = TypeVar("T")


async def start_global(data_dir: Path, store: str = "sqlite", heartbeat: float = 1.0,
                       timeout: float = 3.0, *, api_addr: str = "127.0.0.1:0",
                       sync_addr: str = "127.0.0.1:0") -> GlobalControlPlane:
    """A started global; pass the ports of a stopped one to restart it in their place."""
    cp = GlobalControlPlane(GlobalSettings(
        data_dir=data_dir, api_addr=api_addr, sync_addr=sync_addr, store=store,
        heartbeat_interval=heartbeat, heartbeat_timeout=timeout))
    await cp.start()
    return cp


async def zone_token(cp: GlobalControlPlane, zone: str, path: Path,
                     valid_for: float = 3600.0) -> tuple[Path, str]:
    token, claims = await cp.zone_tokens.issue(zone, valid_for, ["cp", "ingress"])
    path.write_text(token)
    return path, claims.token_id


async def start_zone(global_cp: GlobalControlPlane | None, zone: str, data_dir: Path,
                     store: str = "sqlite", heartbeat: float = 1.0, timeout: float = 3.0,
                     token_file: Path | None = None, sync_port: int | None = None,
                     ca: Path | None = None, **overrides: Any) -> ZoneControlPlane:
    """A started federated zone. Without ``global_cp`` (a global in another process)
    pass ``token_file``, ``sync_port`` and ``ca``; ``overrides`` replace any other
    ``ZoneSettings`` field (``global_ca=None``, ``insecure_skip_verify=True``...)."""
    if token_file is None:
        assert global_cp is not None, "a zone token needs the global that signs it"
        token_file, _ = await zone_token(global_cp, zone, data_dir.parent / f"{zone}.token")
    if global_cp is not None:
        sync_port = sync_port or (global_cp.sync.port if global_cp.sync else 0)
        ca = ca or global_cp.tls.ca_file
    settings = ZoneSettings(
        zone=zone, data_dir=data_dir, api_addr="127.0.0.1:0", xds_addr="127.0.0.1:0",
        store=store,
        global_url=f"grpcs://127.0.0.1:{sync_port}", token_file=token_file,
        global_ca=ca, heartbeat_interval=heartbeat, heartbeat_timeout=timeout)
    cp = ZoneControlPlane(replace(settings, **overrides))
    await cp.start()
    return cp


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(api_url: str) -> Samples:
    """A control plane's ``/metrics``: (sample name, labels) -> value."""
    async with httpx.AsyncClient(base_url=api_url) as client:
        response = await client.get("/metrics")
        response.raise_for_status()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(response.text)
            for s in family.samples}


def sample(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value, 0.0 when the series does not exist (yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


_exporter: InMemorySpanExporter | None = None


def span_recorder() -> InMemorySpanExporter:
    """This process's finished spans, kept in memory.

    The OpenTelemetry tracer provider can be set once per process: the first call
    installs an SDK provider (or, if someone else already installed one, adds to it);
    later calls return the same exporter. Clear it at the start of a test.
    """
    global _exporter
    if _exporter is None:
        exporter = InMemorySpanExporter()
        provider = trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider):
            trace.set_tracer_provider(TracerProvider())
            provider = trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider):
            raise RuntimeError(f"a non-SDK tracer provider is installed: {provider!r}")
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        _exporter = exporter
    return _exporter
