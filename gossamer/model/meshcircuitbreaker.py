"""MeshCircuitBreaker: connection limits and outlier detection per destination.

``connectionLimits`` becomes the cluster's ``circuit_breakers`` thresholds and
``outlierDetection`` its ``outlier_detection``: hosts that fail consecutively, or whose
success rate or failure percentage stands out from their peers, are ejected for a while.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, Field, StrictBool, StrictInt, model_validator
from pydantic_core import PydanticCustomError

from gossamer.model.base import KindDescriptor, Scope, SyncDirection
from gossamer.model.fields import SPEC_CONFIG, Duration
from gossamer.model.policy import MAX_ITEMS, From, PolicySpec, To
from gossamer.model.policy_fields import UINT32_MAX, fail_at


def _check_factor(value: object) -> object:
    # Envoy takes the factor times 1000 as an integer, so three decimals are meaningful.
    try:
        number = Decimal(str(value)) if isinstance(value, (int, float, str)) else None
    except InvalidOperation:
        number = None
    if (isinstance(value, bool) or number is None or not number.is_finite()
            or not Decimal(0) < number <= Decimal(1000)):
        raise PydanticCustomError(
            "factor", 'expected a number above 0 and at most 1000, like 2 or "1.9"')
    return value


# A positive decimal kept in its YAML form (``1.9`` or ``"1.9"``), like ``Percentage``.
Factor = Annotated[str | int | float, BeforeValidator(_check_factor)]
Limit = Annotated[StrictInt, Field(ge=1, le=UINT32_MAX)]


class ConnectionLimits(BaseModel):
    model_config = SPEC_CONFIG

    max_connections: Limit | None = None
    max_pending_requests: Limit | None = None
    max_requests: Limit | None = None
    max_retries: Limit | None = None
    max_connection_pools: Limit | None = None


class Consecutive(BaseModel):
    model_config = SPEC_CONFIG

    consecutive: Limit


class SuccessRate(BaseModel):
    model_config = SPEC_CONFIG

    minimum_hosts: StrictInt | None = Field(None, ge=0, le=UINT32_MAX)
    request_volume: StrictInt | None = Field(None, ge=0, le=UINT32_MAX)
    standard_deviation_factor: Factor | None = None


class FailurePercentage(BaseModel):
    model_config = SPEC_CONFIG

    minimum_hosts: StrictInt | None = Field(None, ge=0, le=UINT32_MAX)
    request_volume: StrictInt | None = Field(None, ge=0, le=UINT32_MAX)
    threshold: StrictInt | None = Field(None, ge=0, le=100)


class Detectors(BaseModel):
    model_config = SPEC_CONFIG

    total_failures: Consecutive | None = None
    gateway_failures: Consecutive | None = None
    local_origin_failures: Consecutive | None = None
    success_rate: SuccessRate | None = None
    failure_percentage: FailurePercentage | None = None


class OutlierDetection(BaseModel):
    model_config = SPEC_CONFIG

    disabled: StrictBool | None = None
    interval: Duration | None = None
    base_ejection_time: Duration | None = None
    max_ejection_percent: StrictInt | None = Field(None, ge=0, le=100)
    split_external_and_local_errors: StrictBool | None = None
    detectors: Detectors | None = None

    @model_validator(mode="after")
    def _local_origin(self) -> OutlierDetection:
        # Envoy only counts local-origin failures separately when told to split them.
        if (self.detectors and self.detectors.local_origin_failures
                and not self.split_external_and_local_errors):
            fail_at(("detectors", "localOriginFailures"),
                    "localOriginFailures needs splitExternalAndLocalErrors: true")
        return self


class MeshCircuitBreakerConf(BaseModel):
    model_config = SPEC_CONFIG

    connection_limits: ConnectionLimits | None = None
    outlier_detection: OutlierDetection | None = None

    @model_validator(mode="after")
    def _something(self) -> MeshCircuitBreakerConf:
        if self.connection_limits is None and self.outlier_detection is None:
            raise ValueError("default needs connectionLimits or outlierDetection")
        return self


class MeshCircuitBreakerSpec(PolicySpec):
    EXTERNAL_DESTINATIONS = True  # proxy.envoy.external applies it
    to: list[To[MeshCircuitBreakerConf]] | None = Field(None, max_length=MAX_ITEMS)
    from_: list[From[MeshCircuitBreakerConf]] | None = Field(
        None, alias="from", max_length=MAX_ITEMS)


DESCRIPTOR = KindDescriptor(
    name="MeshCircuitBreaker",
    spec_model=MeshCircuitBreakerSpec,
    scope=Scope.MESH,
    path="meshcircuitbreakers",
    noun="meshcircuitbreaker",
    alias="mcb",
    sync=SyncDirection.GLOBAL_TO_ZONES,
    is_policy=True,
    description="connection limits and outlier ejection per destination",
)
