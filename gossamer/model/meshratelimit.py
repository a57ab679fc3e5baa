"""MeshRateLimit: per-instance limits on inbound HTTP requests and TCP connections.

``local.http`` becomes Envoy's ``local_ratelimit`` HTTP filter (a token bucket of
``requestRate.num`` tokens refilled every ``interval``, answering ``onRateLimit.status``
when empty); ``local.tcp`` becomes the ``local_ratelimit`` network filter on the inbound
listener. Each proxy limits on its own: three instances at 100/s let 300/s through.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, StrictBool, StrictInt, model_validator

from gossamer.model.base import KindDescriptor, Scope, SyncDirection
from gossamer.model.fields import SPEC_CONFIG, Duration, duration_seconds
from gossamer.model.policy import MAX_ITEMS, From, PolicySpec, Rule, TargetKind
from gossamer.model.policy_fields import UINT32_MAX, HeaderModifier, HttpStatus, fail_at

# Envoy refills token buckets on a timer; it refuses fill intervals below 50ms.
MIN_INTERVAL_SECONDS = 0.05
# Envoy's type.v3.StatusCode only accepts the codes it names; these are its 4xx and 5xx.
ENVOY_ERROR_STATUSES = frozenset([*range(400, 419), *range(421, 427), 428, 429, 431,
                                  *range(500, 509), 510, 511])


class Rate(BaseModel):
    model_config = SPEC_CONFIG

    num: StrictInt = Field(ge=1, le=UINT32_MAX)
    interval: Duration

    @model_validator(mode="after")
    def _interval(self) -> Rate:
        if duration_seconds(self.interval) < MIN_INTERVAL_SECONDS:
            fail_at("interval", "must be at least 50ms", self.interval)
        return self


class OnRateLimit(BaseModel):
    model_config = SPEC_CONFIG

    status: HttpStatus | None = None
    headers: HeaderModifier | None = None

    @model_validator(mode="after")
    def _check(self) -> OnRateLimit:
        if self.status is not None and self.status not in ENVOY_ERROR_STATUSES:
            fail_at("status", "expected a 4xx or 5xx status Envoy knows, like 429 or 503",
                    self.status)
        if self.headers and self.headers.remove:
            fail_at(("headers", "remove"), "a rate-limited response only sets or adds headers")
        return self


class HttpRateLimit(BaseModel):
    model_config = SPEC_CONFIG

    disabled: StrictBool | None = None
    request_rate: Rate | None = None
    on_rate_limit: OnRateLimit | None = None

    @model_validator(mode="after")
    def _rate(self) -> HttpRateLimit:
        if not self.disabled and self.request_rate is None:
            fail_at("requestRate", "required unless disabled is true")
        return self


class TcpRateLimit(BaseModel):
    model_config = SPEC_CONFIG

    disabled: StrictBool | None = None
    connection_rate: Rate | None = None

    @model_validator(mode="after")
    def _rate(self) -> TcpRateLimit:
        if not self.disabled and self.connection_rate is None:
            fail_at("connectionRate", "required unless disabled is true")
        return self


class LocalRateLimit(BaseModel):
    model_config = SPEC_CONFIG

    http: HttpRateLimit | None = None
    tcp: TcpRateLimit | None = None

    @model_validator(mode="after")
    def _something(self) -> LocalRateLimit:
        if self.http is None and self.tcp is None:
            raise ValueError("local needs http or tcp")
        return self


class MeshRateLimitConf(BaseModel):
    model_config = SPEC_CONFIG

    local: LocalRateLimit


class RateLimitFrom(From[MeshRateLimitConf]):
    @model_validator(mode="after")
    def _mesh_only(self) -> RateLimitFrom:
        # The local limiter cannot tell sources apart: one bucket serves every client.
        if self.target_ref.kind is not TargetKind.MESH:
            fail_at(("targetRef", "kind"), "MeshRateLimit from[].targetRef.kind must be Mesh")
        return self


class MeshRateLimitSpec(PolicySpec):
    from_: list[RateLimitFrom] | None = Field(None, alias="from", max_length=MAX_ITEMS)
    rules: list[Rule[MeshRateLimitConf]] | None = Field(None, max_length=MAX_ITEMS)


DESCRIPTOR = KindDescriptor(
    name="MeshRateLimit",
    spec_model=MeshRateLimitSpec,
    scope=Scope.MESH,
    path="meshratelimits",
    noun="meshratelimit",
    alias="mrl",
    sync=SyncDirection.GLOBAL_TO_ZONES,
    is_policy=True,
    description="local rate limits on inbound HTTP requests and TCP connections",
)
