"""MeshTrace: where the selected proxies report spans, how many, and with which tags.

Becomes the ``tracing`` block of every HTTP connection manager on the proxy: one
OpenTelemetry, Zipkin or Datadog provider, the ``overall``/``client``/``random``
sampling percentages, and ``custom_tags`` from literals or request headers. Tracing is
a property of the proxy, not of a peer, so the policy has ``default`` and no to/from.
"""

from __future__ import annotations

import enum

from pydantic import BaseModel, Field, StrictBool, model_validator

from gossamer.model.base import KindDescriptor, Scope, SyncDirection
from gossamer.model.fields import SPEC_CONFIG, Percentage
from gossamer.model.policy import PolicySpec
from gossamer.model.policy_fields import HeaderName, HeaderValue, HostPort, Token, Url, fail_at


class BackendType(enum.StrEnum):
    OPEN_TELEMETRY = "OpenTelemetry"
    ZIPKIN = "Zipkin"
    DATADOG = "Datadog"


class OpenTelemetryBackend(BaseModel):
    model_config = SPEC_CONFIG

    endpoint: HostPort


class ZipkinApiVersion(enum.StrEnum):
    HTTP_JSON = "httpJson"
    HTTP_PROTO = "httpProto"


class ZipkinBackend(BaseModel):
    model_config = SPEC_CONFIG

    url: Url
    trace_id128bit: StrictBool | None = Field(None, alias="traceId128bit")
    api_version: ZipkinApiVersion | None = None
    shared_span_context: StrictBool | None = None


class DatadogBackend(BaseModel):
    model_config = SPEC_CONFIG

    url: Url
    split_service: StrictBool | None = None


_SECTIONS = {BackendType.OPEN_TELEMETRY: "openTelemetry", BackendType.ZIPKIN: "zipkin",
             BackendType.DATADOG: "datadog"}


class TraceBackend(BaseModel):
    model_config = SPEC_CONFIG

    type: BackendType
    open_telemetry: OpenTelemetryBackend | None = None
    zipkin: ZipkinBackend | None = None
    datadog: DatadogBackend | None = None

    @model_validator(mode="after")
    def _section(self) -> TraceBackend:
        wanted = _SECTIONS[self.type]
        given = self.model_dump(by_alias=True, exclude_none=True)
        for section in _SECTIONS.values():
            if section in given and section != wanted:
                fail_at(section, f"a backend of type {self.type.value} takes no {section}")
        if wanted not in given:
            fail_at(wanted, f"a backend of type {self.type.value} needs {wanted}")
        return self


class Sampling(BaseModel):
    model_config = SPEC_CONFIG

    overall: Percentage | None = None
    client: Percentage | None = None
    random: Percentage | None = None


class TagHeader(BaseModel):
    model_config = SPEC_CONFIG

    name: HeaderName
    default: HeaderValue | None = None


class Tag(BaseModel):
    model_config = SPEC_CONFIG

    name: Token
    literal: str | None = Field(None, max_length=1024)
    header: TagHeader | None = None

    @model_validator(mode="after")
    def _one(self) -> Tag:
        if (self.literal is None) == (self.header is None):
            fail_at("literal", "a tag needs exactly one of literal or header")
        return self


class MeshTraceConf(BaseModel):
    model_config = SPEC_CONFIG

    # Envoy has one tracing provider per connection manager, hence at most one backend.
    backends: list[TraceBackend] | None = Field(None, max_length=1)
    sampling: Sampling | None = None
    tags: list[Tag] | None = Field(None, max_length=64)

    @model_validator(mode="after")
    def _unique_tags(self) -> MeshTraceConf:
        names = [t.name for t in self.tags or []]
        for i, name in enumerate(names):
            if name in names[:i]:
                fail_at(("tags", i, "name"), f"tag {name!r} is defined twice", name)
        return self


class MeshTraceSpec(PolicySpec):
    default: MeshTraceConf

    @model_validator(mode="after")
    def _has_something(self) -> MeshTraceSpec:
        # Overrides the base check for to/from/rules: the required default is enough.
        return self


DESCRIPTOR = KindDescriptor(
    name="MeshTrace",
    spec_model=MeshTraceSpec,
    scope=Scope.MESH,
    path="meshtraces",
    noun="meshtrace",
    alias="mtrace",
    sync=SyncDirection.GLOBAL_TO_ZONES,
    is_policy=True,
    description="distributed tracing backend, sampling and span tags",
)
