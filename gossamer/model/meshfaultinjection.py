"""MeshFaultInjection: abort, delay or throttle a share of HTTP requests, for testing.

Each ``http[]`` item becomes one Envoy ``fault`` HTTP filter (inbound for ``from[]``,
outbound for ``to[]``) with its abort status, fixed delay and response bandwidth limit,
each applied to its own percentage of requests.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field, StrictInt, model_validator
from pydantic_core import PydanticCustomError

from gossamer.model.base import KindDescriptor, Scope, SyncDirection
from gossamer.model.fields import SPEC_CONFIG, Duration, Percentage
from gossamer.model.policy import MAX_ITEMS, From, PolicySpec, To

_BANDWIDTH_RE = re.compile(r"^([1-9][0-9]{0,9})(bps|kbps|Mbps|Gbps)$")


def _check_bandwidth(value: str) -> str:
    if not _BANDWIDTH_RE.match(value):
        raise PydanticCustomError(
            "bandwidth", 'expected a bandwidth like "50kbps" (units: bps, kbps, Mbps, Gbps)')
    return value


Bandwidth = Annotated[str, AfterValidator(_check_bandwidth)]


class Abort(BaseModel):
    model_config = SPEC_CONFIG

    http_status: StrictInt = Field(ge=200, le=599)  # Envoy's fault filter refuses 1xx
    percentage: Percentage


class Delay(BaseModel):
    model_config = SPEC_CONFIG

    value: Duration
    percentage: Percentage


class ResponseBandwidth(BaseModel):
    model_config = SPEC_CONFIG

    limit: Bandwidth
    percentage: Percentage


class HttpFault(BaseModel):
    model_config = SPEC_CONFIG

    abort: Abort | None = None
    delay: Delay | None = None
    response_bandwidth: ResponseBandwidth | None = None

    @model_validator(mode="after")
    def _something(self) -> HttpFault:
        if self.abort is None and self.delay is None and self.response_bandwidth is None:
            raise ValueError("a fault needs at least one of abort, delay or responseBandwidth")
        return self


class MeshFaultInjectionConf(BaseModel):
    model_config = SPEC_CONFIG

    http: list[HttpFault] = Field(min_length=1, max_length=16)


class MeshFaultInjectionSpec(PolicySpec):
    EXTERNAL_DESTINATIONS = True  # proxy.envoy.outbound puts it on the VIP's HTTP filters

    to: list[To[MeshFaultInjectionConf]] | None = Field(None, max_length=MAX_ITEMS)
    from_: list[From[MeshFaultInjectionConf]] | None = Field(
        None, alias="from", max_length=MAX_ITEMS)


DESCRIPTOR = KindDescriptor(
    name="MeshFaultInjection",
    spec_model=MeshFaultInjectionSpec,
    scope=Scope.MESH,
    path="meshfaultinjections",
    noun="meshfaultinjection",
    alias="mfi",
    sync=SyncDirection.GLOBAL_TO_ZONES,
    is_policy=True,
    description="injected HTTP aborts, delays and bandwidth limits",
)
