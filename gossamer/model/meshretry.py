"""MeshRetry: how outbound TCP connections, HTTP requests and gRPC calls are retried.

``tcp.maxConnectAttempt`` becomes the TCP proxy's ``max_connect_attempts``; ``http`` and
``grpc`` become a route ``retry_policy`` (``retry_on`` conditions, per-try timeout,
back-off, retriable status codes and headers, host selection predicates).
"""

from __future__ import annotations

import enum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, StrictInt, model_validator
from pydantic_core import PydanticCustomError

from gossamer.model.base import KindDescriptor, Scope, SyncDirection
from gossamer.model.fields import SPEC_CONFIG, Duration, Tags, duration_seconds
from gossamer.model.policy import MAX_ITEMS, PolicySpec, To
from gossamer.model.policy_fields import HeaderMatch, HeaderName, HttpMethod, fail_at

# Envoy's HTTP retry_on conditions; methods and status codes are also accepted (below).
HTTP_CONDITIONS = frozenset({
    "5xx", "gateway-error", "reset", "reset-before-request", "connect-failure",
    "envoy-ratelimited", "retriable-4xx", "refused-stream", "retriable-status-codes",
    "retriable-headers", "http3-post-connect-failure",
})
RETRIABLE_STATUS_CODES = "retriable-status-codes"
_METHODS = frozenset(m.value for m in HttpMethod)


def _quote_status(value: object) -> object:
    if isinstance(value, int) and not isinstance(value, bool):
        raise PydanticCustomError("retry_on", f'quote status codes in retryOn, like "{value}"')
    return value


def _is_status(value: str) -> bool:
    return value.isascii() and value.isdigit() and 100 <= int(value) <= 599


def _check_http_retry_on(value: str) -> str:
    if value in HTTP_CONDITIONS or value in _METHODS or _is_status(value):
        return value
    raise PydanticCustomError(
        "retry_on",
        f"unknown retry condition {value[:64]!r}: expected one of "
        f"{', '.join(sorted(HTTP_CONDITIONS))}, an HTTP method or a quoted status code "
        'like "503"',
    )


HttpRetryOn = Annotated[str, BeforeValidator(_quote_status), AfterValidator(_check_http_retry_on)]


class GrpcRetryOn(enum.StrEnum):
    CANCELED = "canceled"
    DEADLINE_EXCEEDED = "deadline-exceeded"
    INTERNAL = "internal"
    RESOURCE_EXHAUSTED = "resource-exhausted"
    UNAVAILABLE = "unavailable"


class BackOff(BaseModel):
    model_config = SPEC_CONFIG

    base_interval: Duration | None = None
    max_interval: Duration | None = None

    @model_validator(mode="after")
    def _order(self) -> BackOff:
        if self.base_interval and duration_seconds(self.base_interval) <= 0:
            fail_at("baseInterval", "must be longer than zero", self.base_interval)
        if (self.base_interval and self.max_interval
                and duration_seconds(self.max_interval) < duration_seconds(self.base_interval)):
            fail_at("maxInterval", "must not be shorter than baseInterval", self.max_interval)
        return self


class ResetHeaderFormat(enum.StrEnum):
    SECONDS = "Seconds"
    UNIX_TIMESTAMP = "UnixTimestamp"


class ResetHeader(BaseModel):
    model_config = SPEC_CONFIG

    name: HeaderName
    format: ResetHeaderFormat


class RateLimitedBackOff(BaseModel):
    """Back off as long as the upstream's ``Retry-After``-style headers say."""

    model_config = SPEC_CONFIG

    reset_headers: list[ResetHeader] = Field(min_length=1, max_length=8)
    max_interval: Duration | None = None


class TcpRetry(BaseModel):
    model_config = SPEC_CONFIG

    max_connect_attempt: StrictInt = Field(ge=1, le=100)


class HostSelectionPredicate(enum.StrEnum):
    OMIT_PREVIOUS_HOSTS = "OmitPreviousHosts"
    OMIT_HOST_METADATA = "OmitHostMetadata"
    OMIT_PREVIOUS_PRIORITIES = "OmitPreviousPriorities"


class HostSelection(BaseModel):
    model_config = SPEC_CONFIG

    predicate: HostSelectionPredicate
    tags: Tags | None = None
    update_frequency: StrictInt | None = Field(None, ge=1, le=100)

    @model_validator(mode="after")
    def _shape(self) -> HostSelection:
        if (self.tags is not None) != (self.predicate is HostSelectionPredicate.OMIT_HOST_METADATA):
            fail_at("tags", "tags are required with OmitHostMetadata and only with it")
        if (self.update_frequency is not None
                and self.predicate is not HostSelectionPredicate.OMIT_PREVIOUS_PRIORITIES):
            fail_at("updateFrequency", "updateFrequency only applies to OmitPreviousPriorities")
        return self


class HttpRetry(BaseModel):
    model_config = SPEC_CONFIG

    num_retries: StrictInt | None = Field(None, ge=0, le=100)
    per_try_timeout: Duration | None = None
    back_off: BackOff | None = None
    rate_limited_back_off: RateLimitedBackOff | None = None
    retry_on: list[HttpRetryOn] | None = Field(None, max_length=32)
    retriable_response_headers: list[HeaderMatch] | None = Field(None, max_length=16)
    retriable_request_headers: list[HeaderMatch] | None = Field(None, max_length=16)
    host_selection: list[HostSelection] | None = Field(None, max_length=3)
    host_selection_max_attempts: StrictInt | None = Field(None, ge=1, le=100)

    @model_validator(mode="after")
    def _retry_on(self) -> HttpRetry:
        conditions = self.retry_on or []
        for i, cond in enumerate(conditions):
            if cond in conditions[:i]:
                fail_at(("retryOn", i), f"{cond!r} is listed twice", cond)
        if RETRIABLE_STATUS_CODES in conditions and not any(map(_is_status, conditions)):
            fail_at("retryOn", f"{RETRIABLE_STATUS_CODES} needs at least one status code "
                               'in retryOn, like "503"')
        if "retriable-headers" in conditions and not self.retriable_response_headers:
            fail_at("retryOn", "retriable-headers needs retriableResponseHeaders")
        if self.host_selection_max_attempts is not None and not self.host_selection:
            fail_at("hostSelectionMaxAttempts", "only applies together with hostSelection")
        return self


class GrpcRetry(BaseModel):
    model_config = SPEC_CONFIG

    num_retries: StrictInt | None = Field(None, ge=0, le=100)
    per_try_timeout: Duration | None = None
    back_off: BackOff | None = None
    rate_limited_back_off: RateLimitedBackOff | None = None
    retry_on: list[GrpcRetryOn] | None = Field(None, max_length=len(GrpcRetryOn))


class MeshRetryConf(BaseModel):
    model_config = SPEC_CONFIG

    tcp: TcpRetry | None = None
    http: HttpRetry | None = None
    grpc: GrpcRetry | None = None

    @model_validator(mode="after")
    def _something(self) -> MeshRetryConf:
        if self.tcp is None and self.http is None and self.grpc is None:
            raise ValueError("default needs at least one of tcp, http or grpc")
        return self


class MeshRetrySpec(PolicySpec):
    EXTERNAL_DESTINATIONS = True  # proxy.envoy.external applies it
    to: list[To[MeshRetryConf]] | None = Field(None, max_length=MAX_ITEMS)


DESCRIPTOR = KindDescriptor(
    name="MeshRetry",
    spec_model=MeshRetrySpec,
    scope=Scope.MESH,
    path="meshretries",
    noun="meshretry",
    alias="mr",
    sync=SyncDirection.GLOBAL_TO_ZONES,
    is_policy=True,
    description="retries of outbound TCP connects, HTTP requests and gRPC calls",
)
