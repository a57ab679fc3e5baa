"""Field types and small models shared by several policy kinds.

``fields`` holds the scalars every kind uses; this module adds what only policies need:
HTTP statuses, header names and matches, header modifiers, regular expressions, backend
references for the route kinds, ``host:port`` endpoints and URLs. Cross-field checks use
``fail_at`` so that an error names the exact field (``...headers[0].value``) rather than
the object that holds it.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from typing import Annotated, NoReturn
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, Field, StrictInt, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from gossamer.model.fields import SPEC_CONFIG, Name, Port, Tags
from gossamer.model.policy import TargetKind

UINT32_MAX = 2**32 - 1
MAX_REGEX_LENGTH = 1024
MAX_HEADER_VALUE_LENGTH = 4096

_HEADER_NAME_RE = re.compile(r"^:?[a-zA-Z0-9!#$%&'*+\-.^_`|~]+$")
_HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)[a-zA-Z0-9]([a-zA-Z0-9\-]{0,61}[a-zA-Z0-9])?"
                          r"(\.[a-zA-Z0-9]([a-zA-Z0-9\-]{0,61}[a-zA-Z0-9])?)*$")
_TAG_KEY_RE = re.compile(r"^([a-zA-Z0-9.\-]+/)?[a-zA-Z0-9]([a-zA-Z0-9_.\-]*[a-zA-Z0-9])?$")
# RE2 (Envoy's regex engine) has no look-around and no back-references.
_NOT_RE2_RE = re.compile(r"\(\?<?[=!]|\\[1-9]")
_REPEAT_RE = re.compile(r"\{(\d+)(?:,(\d*))?\}")  # RE2 caps {n,m} at 1000


def fail_at(loc: str | int | tuple[str | int, ...], message: str, value: object = None) -> NoReturn:
    """Raise a cross-field error at ``loc`` (wire names) inside the model being validated."""
    path = loc if isinstance(loc, tuple) else (loc,)
    raise ValidationError.from_exception_data("cross-field", [
        {"type": PydanticCustomError("cross_field", message), "loc": path, "input": value},
    ])


def require_regex(loc: str | tuple[str | int, ...], value: str) -> None:
    """For a field that holds a regex only for some values of a sibling ``type``."""
    try:
        _check_regex(value)
    except PydanticCustomError as exc:
        fail_at(loc, exc.message(), value)


def _check_header_name(value: str) -> str:
    if not 1 <= len(value) <= 256 or not _HEADER_NAME_RE.match(value):
        raise PydanticCustomError("header_name", "expected an HTTP header name like x-request-id")
    return value


def _check_header_value(value: str) -> str:
    if len(value) > MAX_HEADER_VALUE_LENGTH or any(c in value for c in "\r\n\0"):
        raise PydanticCustomError(
            "header_value",
            f"expected at most {MAX_HEADER_VALUE_LENGTH} characters with no line breaks",
        )
    return value


def _check_regex(value: str) -> str:
    if not value or len(value) > MAX_REGEX_LENGTH:
        raise PydanticCustomError(
            "regex", f"expected a regex of 1 to {MAX_REGEX_LENGTH} characters")
    if _NOT_RE2_RE.search(value):
        raise PydanticCustomError("regex", "look-around and back-references are not supported")
    counts = [n for pair in _REPEAT_RE.findall(value) for n in pair if n]
    if any(len(n) > 4 or int(n) > 1000 for n in counts):
        raise PydanticCustomError("regex", "repetition counts above 1000 are not supported")
    try:
        re.compile(value)
    except re.error as exc:
        raise PydanticCustomError("regex", f"invalid regex: {exc}") from None
    except (RecursionError, OverflowError):
        raise PydanticCustomError("regex", "regex is nested too deeply") from None
    return value


def _check_hostname(value: str) -> str:
    if not _HOSTNAME_RE.match(value):
        raise PydanticCustomError("hostname", "expected a DNS name like backend.example.com")
    return value


def _check_host(host: str) -> bool:
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return bool(_HOSTNAME_RE.match(host))
    return True


def _check_host_value(value: str) -> str:
    if not _check_host(value):
        raise PydanticCustomError("host", "expected an IP address or a DNS name")
    return value


def _check_host_port(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535 or not _check_host(host):
        raise PydanticCustomError("endpoint", 'expected "host:port", like otel-collector:4317')
    return value


def _check_url(value: str) -> str:
    try:
        parts = urlsplit(value)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        port_ok = False
    if (not port_ok or parts.scheme not in ("http", "https") or not parts.hostname
            or not _check_host(parts.hostname) or len(value) > 2048 or " " in value):
        raise PydanticCustomError("url", "expected an http:// or https:// URL")
    return value


def _check_token(value: str) -> str:
    if not 1 <= len(value) <= 256 or not value.isascii() or not value.isprintable() \
            or " " in value:
        raise PydanticCustomError("token", "expected 1 to 256 printable ASCII characters "
                                           "with no spaces")
    return value


def _check_url_path(value: str) -> str:
    if not value.startswith("/") or len(value) > 1024 or not value.isascii() \
            or not value.isprintable() or " " in value:
        raise PydanticCustomError("url_path", 'expected a URL path like "/api/v1" '
                                              "(printable ASCII, no spaces)")
    return value


def _check_file_path(value: str) -> str:
    if not value.startswith("/") or len(value) > 1024 or any(c in value for c in "\r\n\0"):
        raise PydanticCustomError("file_path", 'expected an absolute file path like '
                                               '"/var/log/access.log"')
    return value


def _check_tag_key(value: str) -> str:
    if len(value) > 253 or not _TAG_KEY_RE.match(value):
        raise PydanticCustomError("tag_key", f"invalid tag key {value!r}")
    return value


HttpStatus = Annotated[StrictInt, Field(ge=100, le=599)]
HeaderName = Annotated[str, AfterValidator(_check_header_name)]
HeaderValue = Annotated[str, AfterValidator(_check_header_value)]
Regex = Annotated[str, AfterValidator(_check_regex)]
Hostname = Annotated[str, AfterValidator(_check_hostname)]
Host = Annotated[str, AfterValidator(_check_host_value)]
HostPort = Annotated[str, AfterValidator(_check_host_port)]
Url = Annotated[str, AfterValidator(_check_url)]
TagKey = Annotated[str, AfterValidator(_check_tag_key)]
Token = Annotated[str, AfterValidator(_check_token)]
UrlPath = Annotated[str, AfterValidator(_check_url_path)]
FilePath = Annotated[str, AfterValidator(_check_file_path)]


class HttpMethod(enum.StrEnum):
    CONNECT = "CONNECT"
    DELETE = "DELETE"
    GET = "GET"
    HEAD = "HEAD"
    OPTIONS = "OPTIONS"
    PATCH = "PATCH"
    POST = "POST"
    PUT = "PUT"
    TRACE = "TRACE"


class HeaderMatchType(enum.StrEnum):
    EXACT = "Exact"
    PRESENT = "Present"
    REGULAR_EXPRESSION = "RegularExpression"
    ABSENT = "Absent"
    PREFIX = "Prefix"


class HeaderMatch(BaseModel):
    """Matches one request or response header; ``Present``/``Absent`` look at the name only."""

    model_config = SPEC_CONFIG

    type: HeaderMatchType = HeaderMatchType.EXACT
    name: HeaderName
    value: HeaderValue | None = None

    @model_validator(mode="after")
    def _value(self) -> HeaderMatch:
        if self.type in (HeaderMatchType.PRESENT, HeaderMatchType.ABSENT):
            if self.value is not None:
                fail_at("value", f"a header match of type {self.type.value} takes no value")
        elif not self.value:
            fail_at("value", f"a header match of type {self.type.value} needs a value")
        elif self.type is HeaderMatchType.REGULAR_EXPRESSION:
            require_regex("value", self.value)
        return self


class Header(BaseModel):
    model_config = SPEC_CONFIG

    name: HeaderName
    value: HeaderValue


class HeaderModifier(BaseModel):
    """Headers to overwrite (``set``), append to (``add``) and drop (``remove``)."""

    model_config = SPEC_CONFIG

    set: list[Header] | None = Field(None, max_length=32)
    add: list[Header] | None = Field(None, max_length=32)
    remove: list[HeaderName] | None = Field(None, max_length=32)

    @model_validator(mode="after")
    def _each_header_once(self) -> HeaderModifier:
        seen: dict[str, str] = {}
        sections = (("set", [h.name for h in self.set or []]),
                    ("add", [h.name for h in self.add or []]),
                    ("remove", list(self.remove or [])))
        for section, names in sections:
            for i, name in enumerate(names):
                key = name.lower()
                if key in seen:
                    fail_at((section, i), f"header {name!r} is already modified in {seen[key]}")
                seen[key] = section
        return self


class BackendRefKind(enum.StrEnum):
    MESH_SERVICE = "MeshService"
    MESH_SERVICE_SUBSET = "MeshServiceSubset"


class BackendRef(BaseModel):
    """Where a route sends traffic: a service (or a tagged subset of it) with a weight."""

    model_config = SPEC_CONFIG

    kind: BackendRefKind
    name: Name
    tags: Tags | None = None
    weight: StrictInt = Field(1, ge=0, le=1_000_000)
    port: Port | None = None

    @model_validator(mode="after")
    def _tags(self) -> BackendRef:
        if self.kind is BackendRefKind.MESH_SERVICE_SUBSET and not self.tags:
            fail_at("tags", "a backendRef of kind MeshServiceSubset needs tags")
        if self.kind is BackendRefKind.MESH_SERVICE and self.tags:
            fail_at("tags", "a backendRef of kind MeshService takes no tags "
                            "(use MeshServiceSubset)")
        return self


# Routes attach to one destination service; Mesh-wide routes would shadow every service.
ROUTE_TO_KINDS = frozenset({TargetKind.MESH_SERVICE})
