"""Small helpers that turn spec values into Envoy protobuf building blocks.

Spec values stay in their YAML form (``"5s"``, ``"12.5"``) until here: this is where a
duration becomes a ``google.protobuf.Duration``, a percentage a ``FractionalPercent``,
and an extension config a ``typed_config`` ``Any``. Everything else in ``proxy.envoy``
builds messages with these, so the conversions (and their rounding) live in one place.
"""

from __future__ import annotations

import functools
import ipaddress
import re

from envoy.config.core.v3 import (
    address_pb2,
    base_pb2,
    config_source_pb2,
    extension_pb2,
    grpc_service_pb2,
)
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import any_pb2, duration_pb2, wrappers_pb2
from google.protobuf.message import Message

from gossamer.model.fields import duration_seconds
from proxy.limits import BUFFER_LIMIT

_MILLION = 1_000_000
_STAT_RE = re.compile(r"[^A-Za-z0-9_]")


def duration(text: str) -> duration_pb2.Duration:
    """A Go-style duration (``"1m30s"``) as a protobuf Duration, to the nanosecond."""
    nanos = round(duration_seconds(text) * 1e9)
    return duration_pb2.Duration(seconds=nanos // 10**9, nanos=nanos % 10**9)


def percentage(value: str | int | float) -> float:
    """A validated ``Percentage`` (``25``, ``"12.5"``) as a float."""
    return float(value)


def fractional(value: str | int | float) -> percent_pb2.FractionalPercent:
    """A percentage as parts per million (Envoy's finest ``FractionalPercent``)."""
    return percent_pb2.FractionalPercent(
        numerator=round(percentage(value) * _MILLION / 100),
        denominator=percent_pb2.FractionalPercent.MILLION)


def runtime_fraction(value: str | int | float, key: str) -> base_pb2.RuntimeFractionalPercent:
    return base_pb2.RuntimeFractionalPercent(default_value=fractional(value), runtime_key=key)


def percent(value: str | int | float) -> percent_pb2.Percent:
    return percent_pb2.Percent(value=percentage(value))


def u32(value: int) -> wrappers_pb2.UInt32Value:
    return wrappers_pb2.UInt32Value(value=value)


def buffer_limit() -> wrappers_pb2.UInt32Value:
    """``per_connection_buffer_limit_bytes`` of every listener and cluster (see
    ``proxy.limits``)."""
    return u32(BUFFER_LIMIT)


def boolean(value: bool) -> wrappers_pb2.BoolValue:
    return wrappers_pb2.BoolValue(value=value)


def pack(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def typed_extension(name: str, message: Message) -> extension_pb2.TypedExtensionConfig:
    return extension_pb2.TypedExtensionConfig(name=name, typed_config=pack(message))


def socket_address(address: str, port: int) -> address_pb2.Address:
    return address_pb2.Address(socket_address=address_pb2.SocketAddress(
        address=address, port_value=port))


@functools.lru_cache(maxsize=65536)
def is_ip(host: str) -> bool:
    """Whether ``host`` is an IP literal (memoized: every generation asks it of the same
    few thousand addresses, and ``ipaddress`` parses in Python)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def listen_address(host: str) -> str:
    """Envoy binds listeners to IP literals only; a hostname Dataplane address binds all
    interfaces of its family instead (the name is still what other sidecars dial)."""
    return host if is_ip(host) else "0.0.0.0"


def ads() -> config_source_pb2.ConfigSource:
    """Resources fetched over the ADS stream the bootstrap opens to the zone CP."""
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.V3)


def envoy_grpc(cluster: str) -> grpc_service_pb2.GrpcService:
    return grpc_service_pb2.GrpcService(
        envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name=cluster))


def exact(value: str) -> string_pb2.StringMatcher:
    return string_pb2.StringMatcher(exact=value)


def regex(pattern: str) -> regex_pb2.RegexMatcher:
    """An RE2 matcher (Envoy's default engine; the models reject what RE2 cannot run)."""
    return regex_pb2.RegexMatcher(regex=pattern)


def stat_prefix(name: str) -> str:
    """A resource name as a stat prefix: ``inbound:10.0.0.1:80`` → ``inbound_10_0_0_1_80``."""
    return _STAT_RE.sub("_", name)
