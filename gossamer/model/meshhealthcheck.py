"""MeshHealthCheck: active health checks from the selected proxies to their destinations.

Becomes the cluster's ``health_checks``: one HTTP, TCP or gRPC checker (the first one not
disabled, in that order, that the destination's protocol allows) with the shared
interval, timeout, thresholds and jitter.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field, StrictBool, StrictInt, model_validator
from pydantic_core import PydanticCustomError

from gossamer.model.base import KindDescriptor, Scope, SyncDirection
from gossamer.model.fields import SPEC_CONFIG, Duration, Percentage, duration_seconds
from gossamer.model.policy import MAX_ITEMS, PolicySpec, To
from gossamer.model.policy_fields import (
    FilePath,
    HeaderModifier,
    Hostname,
    HttpStatus,
    Token,
    UrlPath,
    fail_at,
)


def _check_base64(value: str) -> str:
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise PydanticCustomError("base64", "expected base64-encoded bytes") from None
    if not decoded:
        raise PydanticCustomError("base64", "expected at least one byte")
    return value


Base64 = Annotated[str, Field(max_length=4096), AfterValidator(_check_base64)]
Threshold = Annotated[StrictInt, Field(ge=1, le=1000)]


class HttpHealthCheck(BaseModel):
    model_config = SPEC_CONFIG

    disabled: StrictBool | None = None
    path: UrlPath | None = None
    expected_statuses: list[HttpStatus] | None = Field(None, max_length=32)
    request_headers_to_add: HeaderModifier | None = None

    @model_validator(mode="after")
    def _no_remove(self) -> HttpHealthCheck:
        if self.request_headers_to_add and self.request_headers_to_add.remove:
            fail_at(("requestHeadersToAdd", "remove"), "health check requests only set or add "
                                                       "headers")
        return self


class TcpHealthCheck(BaseModel):
    model_config = SPEC_CONFIG

    disabled: StrictBool | None = None
    send: Base64 | None = None
    receive: list[Base64] | None = Field(None, max_length=16)


class GrpcHealthCheck(BaseModel):
    model_config = SPEC_CONFIG

    disabled: StrictBool | None = None
    service_name: Token | None = None
    authority: Hostname | None = None


class MeshHealthCheckConf(BaseModel):
    model_config = SPEC_CONFIG

    interval: Duration | None = None
    timeout: Duration | None = None
    unhealthy_threshold: Threshold | None = None
    healthy_threshold: Threshold | None = None
    initial_jitter: Duration | None = None
    interval_jitter: Duration | None = None
    interval_jitter_percent: StrictInt | None = Field(None, ge=0, le=100)
    healthy_panic_threshold: Percentage | None = None
    fail_traffic_on_panic: StrictBool | None = None
    no_traffic_interval: Duration | None = None
    event_log_path: FilePath | None = None
    always_log_health_check_failures: StrictBool | None = None
    reuse_connection: StrictBool | None = None
    http: HttpHealthCheck | None = None
    tcp: TcpHealthCheck | None = None
    grpc: GrpcHealthCheck | None = None

    @model_validator(mode="after")
    def _positive(self) -> MeshHealthCheckConf:
        # Envoy rejects a zero interval or timeout, which would NACK the whole cluster.
        for name in ("interval", "timeout", "no_traffic_interval"):
            value = getattr(self, name)
            if value is not None and duration_seconds(value) <= 0:
                wire = type(self).model_fields[name].alias or name
                fail_at(wire, "must be longer than zero", value)
        return self


class MeshHealthCheckSpec(PolicySpec):
    EXTERNAL_DESTINATIONS = True  # proxy.envoy.external applies it
    to: list[To[MeshHealthCheckConf]] | None = Field(None, max_length=MAX_ITEMS)


DESCRIPTOR = KindDescriptor(
    name="MeshHealthCheck",
    spec_model=MeshHealthCheckSpec,
    scope=Scope.MESH,
    path="meshhealthchecks",
    noun="meshhealthcheck",
    alias="mhc",
    sync=SyncDirection.GLOBAL_TO_ZONES,
    is_policy=True,
    description="active HTTP, TCP and gRPC health checks of destinations",
)
