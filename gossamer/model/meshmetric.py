"""MeshMetric: which metrics the selected proxies expose and where they send them.

``sidecar`` picks the Envoy stats to keep (profiles plus include/exclude matchers on
stat names); ``applications`` lists application endpoints whose metrics the sidecar
scrapes and merges with its own; each backend is a Prometheus listener on the proxy or
an OpenTelemetry exporter pushing every ``refreshInterval``. Like MeshTrace, metrics are
a property of the proxy, so the policy has ``default`` and no to/from.
"""

from __future__ import annotations

import enum

from pydantic import BaseModel, Field, StrictBool, model_validator

from gossamer.model.base import KindDescriptor, Scope, SyncDirection
from gossamer.model.fields import SPEC_CONFIG, Duration, Port, duration_seconds
from gossamer.model.policy import PolicySpec
from gossamer.model.policy_fields import Host, HostPort, Token, UrlPath, fail_at, require_regex


class ProfileName(enum.StrEnum):
    ALL = "All"
    BASIC = "Basic"
    NONE = "None"


class Profile(BaseModel):
    model_config = SPEC_CONFIG

    name: ProfileName


class SelectorType(enum.StrEnum):
    REGEX = "Regex"
    PREFIX = "Prefix"
    EXACT = "Exact"
    CONTAINS = "Contains"


class Selector(BaseModel):
    """Matches Envoy stat names, e.g. ``{type: Prefix, match: cluster.}``."""

    model_config = SPEC_CONFIG

    type: SelectorType
    match: str = Field(min_length=1, max_length=1024)

    @model_validator(mode="after")
    def _regex(self) -> Selector:
        if self.type is SelectorType.REGEX:
            require_regex("match", self.match)
        return self


class Profiles(BaseModel):
    model_config = SPEC_CONFIG

    append_profiles: list[Profile] | None = Field(None, max_length=len(ProfileName))
    exclude: list[Selector] | None = Field(None, max_length=64)
    include: list[Selector] | None = Field(None, max_length=64)


class Sidecar(BaseModel):
    model_config = SPEC_CONFIG

    include_unused: StrictBool | None = None
    profiles: Profiles | None = None


class Application(BaseModel):
    model_config = SPEC_CONFIG

    name: Token | None = None
    path: UrlPath | None = None
    port: Port
    address: Host | None = None


class BackendType(enum.StrEnum):
    PROMETHEUS = "Prometheus"
    OPEN_TELEMETRY = "OpenTelemetry"


class TlsMode(enum.StrEnum):
    DISABLED = "Disabled"
    PROVIDED_TLS = "ProvidedTLS"
    ACTIVE_MTLS_BACKEND = "ActiveMTLSBackend"


class PrometheusTls(BaseModel):
    model_config = SPEC_CONFIG

    mode: TlsMode


class PrometheusBackend(BaseModel):
    model_config = SPEC_CONFIG

    client_id: Token | None = None
    port: Port | None = None
    path: UrlPath | None = None
    tls: PrometheusTls | None = None


class OpenTelemetryBackend(BaseModel):
    model_config = SPEC_CONFIG

    endpoint: HostPort
    refresh_interval: Duration | None = None

    @model_validator(mode="after")
    def _interval(self) -> OpenTelemetryBackend:
        if self.refresh_interval is not None and duration_seconds(self.refresh_interval) < 1:
            fail_at("refreshInterval", "must be at least 1s", self.refresh_interval)
        return self


class MetricBackend(BaseModel):
    model_config = SPEC_CONFIG

    type: BackendType
    prometheus: PrometheusBackend | None = None
    open_telemetry: OpenTelemetryBackend | None = None

    @model_validator(mode="after")
    def _section(self) -> MetricBackend:
        # Prometheus has usable defaults (port 5670, /metrics); OpenTelemetry needs a target.
        prom = self.type is BackendType.PROMETHEUS
        if prom and self.open_telemetry is not None:
            fail_at("openTelemetry", "a backend of type Prometheus takes no openTelemetry")
        if not prom and self.prometheus is not None:
            fail_at("prometheus", "a backend of type OpenTelemetry takes no prometheus")
        if not prom and self.open_telemetry is None:
            fail_at("openTelemetry", "a backend of type OpenTelemetry needs openTelemetry")
        return self


class MeshMetricConf(BaseModel):
    model_config = SPEC_CONFIG

    sidecar: Sidecar | None = None
    applications: list[Application] | None = Field(None, max_length=32)
    backends: list[MetricBackend] | None = Field(None, max_length=8)

    @model_validator(mode="after")
    def _unique(self) -> MeshMetricConf:
        # Two Prometheus backends on one port would be two listeners on one socket.
        ports: list[int | None] = []
        for i, backend in enumerate(self.backends or []):
            if backend.prometheus is None:
                continue
            port = backend.prometheus.port
            if port in ports:
                fail_at(("backends", i, "prometheus", "port"),
                        f"another Prometheus backend already uses port {port or 'default'}", port)
            ports.append(port)
        return self


class MeshMetricSpec(PolicySpec):
    default: MeshMetricConf

    @model_validator(mode="after")
    def _has_something(self) -> MeshMetricSpec:
        # Overrides the base check for to/from/rules: the required default is enough.
        return self


DESCRIPTOR = KindDescriptor(
    name="MeshMetric",
    spec_model=MeshMetricSpec,
    scope=Scope.MESH,
    path="meshmetrics",
    noun="meshmetric",
    alias="mm",
    sync=SyncDirection.GLOBAL_TO_ZONES,
    is_policy=True,
    description="proxy and application metrics for Prometheus or OpenTelemetry",
)
