"""MeshAccessLog: where the selected proxies log each request or connection, and how.

Every backend becomes one Envoy ``access_log`` entry on the matching listener (inbound
for ``from[]``/``rules[]``, outbound for ``to[]``): a file, a TCP stream of log lines,
or an OpenTelemetry logs exporter. ``format`` is an Envoy format string (``plain``) or
a list of key/command-operator pairs rendered as JSON.
"""

from __future__ import annotations

import enum
import math
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, Field, StrictBool, model_validator
from pydantic_core import PydanticCustomError

from gossamer.model.base import KindDescriptor, Scope, SyncDirection
from gossamer.model.fields import SPEC_CONFIG
from gossamer.model.policy import MAX_ITEMS, From, PolicySpec, Rule, To
from gossamer.model.policy_fields import FilePath, HostPort, fail_at

MAX_BODY_NODES = 1024
MAX_BODY_DEPTH = 16


def _check_body(value: object) -> object:
    """Any JSON value, bounded: YAML could otherwise hand us an arbitrarily deep tree."""
    stack: list[tuple[object, int]] = [(value, 1)]
    nodes = 0
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if nodes > MAX_BODY_NODES or depth > MAX_BODY_DEPTH:
            raise PydanticCustomError("body", f"body is larger than {MAX_BODY_NODES} values "
                                              f"or deeper than {MAX_BODY_DEPTH} levels")
        if isinstance(node, dict):
            if not all(isinstance(k, str) and len(k) <= 256 for k in node):
                raise PydanticCustomError("body", "body keys must be strings")
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
        elif isinstance(node, str) and len(node) > 4096:
            raise PydanticCustomError("body", "body strings are at most 4096 characters")
        elif isinstance(node, float) and not math.isfinite(node):
            raise PydanticCustomError("body", "JSON has no NaN or infinity")
        elif node is not None and not isinstance(node, (str, int, float, bool)):
            raise PydanticCustomError("body", "expected a JSON value")
    return value


JsonBody = Annotated[Any, BeforeValidator(_check_body)]


class FormatType(enum.StrEnum):
    PLAIN = "Plain"
    JSON = "Json"


class JsonField(BaseModel):
    model_config = SPEC_CONFIG

    key: str = Field(min_length=1, max_length=256)
    value: str = Field(max_length=1024)


class Format(BaseModel):
    model_config = SPEC_CONFIG

    type: FormatType
    plain: str | None = Field(None, min_length=1, max_length=4096)
    json_: list[JsonField] | None = Field(None, alias="json", min_length=1, max_length=64)
    omit_empty_values: StrictBool | None = None

    @model_validator(mode="after")
    def _section(self) -> Format:
        plain = self.type is FormatType.PLAIN
        wanted, other = ("plain", "json") if plain else ("json", "plain")
        values = {"plain": self.plain, "json": self.json_}
        if values[wanted] is None:
            fail_at(wanted, f"a format of type {self.type.value} needs {wanted}")
        if values[other] is not None:
            fail_at(other, f"a format of type {self.type.value} takes no {other}")
        keys = [f.key for f in self.json_ or []]
        for i, key in enumerate(keys):
            if key in keys[:i]:
                fail_at(("json", i, "key"), f"key {key!r} appears twice", key)
        return self


class FileBackend(BaseModel):
    model_config = SPEC_CONFIG

    path: FilePath
    format: Format | None = None


class TcpBackend(BaseModel):
    model_config = SPEC_CONFIG

    address: HostPort
    format: Format | None = None


class Attribute(BaseModel):
    model_config = SPEC_CONFIG

    key: str = Field(min_length=1, max_length=256)
    value: str = Field(max_length=1024)


class OpenTelemetryBackend(BaseModel):
    model_config = SPEC_CONFIG

    endpoint: HostPort
    body: JsonBody = None
    attributes: list[Attribute] | None = Field(None, max_length=64)


class Backend(BaseModel):
    model_config = SPEC_CONFIG

    file: FileBackend | None = None
    tcp: TcpBackend | None = None
    open_telemetry: OpenTelemetryBackend | None = None

    @model_validator(mode="after")
    def _one(self) -> Backend:
        if sum(b is not None for b in (self.file, self.tcp, self.open_telemetry)) != 1:
            raise ValueError("a backend needs exactly one of file, tcp or openTelemetry")
        return self


class MeshAccessLogConf(BaseModel):
    model_config = SPEC_CONFIG

    backends: list[Backend] = Field(min_length=1, max_length=16)


class MeshAccessLogSpec(PolicySpec):
    EXTERNAL_DESTINATIONS = True  # proxy.envoy.external applies it
    to: list[To[MeshAccessLogConf]] | None = Field(None, max_length=MAX_ITEMS)
    from_: list[From[MeshAccessLogConf]] | None = Field(None, alias="from", max_length=MAX_ITEMS)
    rules: list[Rule[MeshAccessLogConf]] | None = Field(None, max_length=MAX_ITEMS)


DESCRIPTOR = KindDescriptor(
    name="MeshAccessLog",
    spec_model=MeshAccessLogSpec,
    scope=Scope.MESH,
    path="meshaccesslogs",
    noun="meshaccesslog",
    alias="mal",
    sync=SyncDirection.GLOBAL_TO_ZONES,
    is_policy=True,
    description="access logs to files, TCP collectors or OpenTelemetry",
)
