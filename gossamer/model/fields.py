"""Constrained scalar types shared by every resource kind.

Each type is an ``Annotated`` alias whose validator raises a ``PydanticCustomError``
with a message a person can act on; ``gossamer.model.registry.parse_document`` prefixes it
with the field path (``spec.to[0].default.http.requestTimeout: expected a duration like
"5s"``). Values stay in their YAML form (``"5s"``, ``"12.5"``) in the spec so that a
round trip is exact; helpers convert them for Envoy.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from gossamer.model.kind_index import MAX_NAME_LENGTH as MAX_NAME_LENGTH

MAX_LABEL_VALUE_LENGTH = 253

# Go-style durations: one or more <number><unit> groups, e.g. "5s", "1m30s", "250ms".
_DURATION_RE = re.compile(r"^(?:(\d+(?:\.\d+)?)(h|m|s|ms|us|µs|ns))+$")
_DURATION_PART_RE = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
MAX_DURATION_SECONDS = 10 * 365 * 24 * 3600.0

_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9.\-]*[a-z0-9])?$")
_TAG_KEY_RE = re.compile(r"^([a-zA-Z0-9.\-]+/)?[a-zA-Z0-9]([a-zA-Z0-9_.\-]*[a-zA-Z0-9])?$")
_TAG_VALUE_RE = re.compile(r"^[a-zA-Z0-9_.\-:*]*$")


def duration_seconds(text: str) -> float:
    """Seconds in a Go-style duration string already validated by ``Duration``."""
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART_RE.findall(text))


def _check_duration(value: object) -> str:
    if not isinstance(value, str) or not _DURATION_RE.match(value):
        raise PydanticCustomError("duration", 'expected a duration like "5s"')
    if duration_seconds(value) > MAX_DURATION_SECONDS:
        raise PydanticCustomError("duration", "duration is longer than ten years")
    return value


def _check_percentage(value: object) -> str | int | float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise PydanticCustomError(
            "percentage", 'expected a percentage between 0 and 100, like 25 or "12.5"'
        ) from None
    if isinstance(value, bool) or not 0.0 <= number <= 100.0:
        raise PydanticCustomError(
            "percentage", 'expected a percentage between 0 and 100, like 25 or "12.5"'
        )
    return value  # type: ignore[return-value]


def _check_port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise PydanticCustomError("port", "expected a port between 1 and 65535")
    return value


def _check_name(value: str) -> str:
    if len(value) > MAX_NAME_LENGTH:
        raise PydanticCustomError("name", f"longer than {MAX_NAME_LENGTH} characters")
    if not _NAME_RE.match(value):
        raise PydanticCustomError(
            "name",
            "expected lower-case letters, digits, '-' and '.', "
            "starting and ending with a letter or digit",
        )
    return value


def _check_tags(value: dict[str, str]) -> dict[str, str]:
    if len(value) > 64:
        raise PydanticCustomError("tags", "more than 64 tags")
    for key, tag in value.items():
        if len(key) > 253 or not _TAG_KEY_RE.match(key):
            raise PydanticCustomError("tags", f"invalid tag key {key!r}")
        if len(tag) > MAX_LABEL_VALUE_LENGTH or not _TAG_VALUE_RE.match(tag):
            raise PydanticCustomError("tags", f"invalid value {tag!r} for tag {key!r}")
    return value


def _reject_non_string(value: object) -> object:
    # YAML turns `version: 1` into an int; tags are strings, and silently coercing
    # would make `1` and `"1"` two spellings of one tag.
    if isinstance(value, dict):
        for key, tag in value.items():
            if not isinstance(key, str) or not isinstance(tag, str):
                raise PydanticCustomError(
                    "tags", f"tag {key!r} must map a string to a string (quote numbers)"
                )
    return value


Duration = Annotated[str, BeforeValidator(_check_duration)]
Percentage = Annotated[str | int | float, BeforeValidator(_check_percentage)]
Port = Annotated[int, AfterValidator(_check_port)]
Name = Annotated[str, AfterValidator(_check_name)]
Tags = Annotated[dict[str, str], BeforeValidator(_reject_non_string), AfterValidator(_check_tags)]

# Every spec model: camelCase on the wire, unknown fields refused, immutable.
SPEC_CONFIG = ConfigDict(
    extra="forbid",
    frozen=True,
    populate_by_name=True,
    alias_generator=to_camel,
    str_max_length=4096,
)


M = TypeVar("M", bound=BaseModel)


def validate_nested(model: type[M], data: Any, *loc: str | int) -> M:
    """Validate ``data`` as ``model`` from inside another model's validator.

    Used where a field's shape depends on a sibling (a CA backend's ``conf`` on its
    ``type``): errors keep their full path (``conf.address``) instead of losing the prefix.
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ValidationError.from_exception_data(exc.title, [
            {"type": PydanticCustomError(e["type"], e["msg"].replace("{", "{{").replace("}", "}}")),
             "loc": (*loc, *e["loc"]), "input": e["input"]}
            for e in exc.errors()
        ]) from None
