"""MeshAccessLog → ``access_log`` entries on HTTP connection managers and TCP proxies.

- ``file`` → ``envoy.access_loggers.file`` writing to ``path`` (``/dev/stdout`` logs to
  the agent's Envoy output). ``format.plain`` is an Envoy format string (a newline is
  appended); ``format.json`` becomes ``json_format`` (one JSON object per line, keys in
  the given order, ``omitEmptyValues`` honoured). Without ``format`` Envoy's default
  text format is used.
- ``openTelemetry`` → ``envoy.access_loggers.open_telemetry``, OTLP/gRPC to a generated
  ``otlp:<host>:<port>`` cluster, ``body`` (any JSON, format strings inside) as the log
  record body and ``attributes`` as its attributes. The collector is named through
  ``common_config``, which Envoy 1.40 marks deprecated in favour of ``grpc_service``;
  the xds-protos release we build with does not have that field yet (switch when it
  does; Envoy still accepts ``common_config`` with a warning).
- ``tcp`` is not translated: Envoy has no logger that writes plain lines to a TCP socket
  (its TCP loggers speak gRPC ALS or Fluentd). Left to the agent (it could relay a file).

Outbound listeners log with the destination's ``to[]`` conf, inbound ones with the
inbound's conf.
"""

from __future__ import annotations

import json
from typing import Any

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2, config_source_pb2, substitution_format_string_pb2
from envoy.extensions.access_loggers.file.v3 import file_pb2
from envoy.extensions.access_loggers.grpc.v3 import als_pb2
from envoy.extensions.access_loggers.open_telemetry.v3 import logs_service_pb2
from google.protobuf import struct_pb2
from opentelemetry.proto.common.v1 import common_pb2 as _otel_common_pb2

from gossamer.model.meshaccesslog import Backend, Format, FormatType, MeshAccessLogConf
from proxy.envoy.clusters import grpc_collector
from proxy.envoy.protos import envoy_grpc, pack

# opentelemetry-proto ships typed stubs that do not describe messages; treat it as Any.
otel_pb2: Any = _otel_common_pb2

FILE_LOGGER = "envoy.access_loggers.file"
OTEL_LOGGER = "envoy.access_loggers.open_telemetry"
DEFAULT_OTEL_BODY = ('[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% '
                     '%PROTOCOL%" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% '
                     '%BYTES_SENT% %DURATION% %UPSTREAM_HOST%')


def _format(fmt: Format) -> substitution_format_string_pb2.SubstitutionFormatString:
    out = substitution_format_string_pb2.SubstitutionFormatString(
        omit_empty_values=bool(fmt.omit_empty_values))
    if fmt.type is FormatType.PLAIN and fmt.plain is not None:
        text = fmt.plain if fmt.plain.endswith("\n") else fmt.plain + "\n"
        out.text_format_source.CopyFrom(base_pb2.DataSource(inline_string=text))
    else:
        body = struct_pb2.Struct()
        for field in fmt.json_ or []:
            body.fields[field.key].string_value = field.value
        out.json_format.CopyFrom(body)
    return out


def _any_value(value: Any) -> Any:
    """A JSON value as an OTLP ``AnyValue``; Envoy formats only strings, lists and maps,
    so scalars become their JSON text (``true``, ``1.5``)."""
    if isinstance(value, list):
        return otel_pb2.AnyValue(array_value=otel_pb2.ArrayValue(
            values=[_any_value(v) for v in value]))
    if isinstance(value, dict):
        return otel_pb2.AnyValue(kvlist_value=otel_pb2.KeyValueList(values=[
            otel_pb2.KeyValue(key=k, value=_any_value(v)) for k, v in value.items()]))
    if isinstance(value, str):
        return otel_pb2.AnyValue(string_value=value)
    return otel_pb2.AnyValue(string_value="" if value is None else json.dumps(value))


def _backend(backend: Backend) -> tuple[accesslog_pb2.AccessLog | None, cluster_pb2.Cluster | None]:
    if backend.file is not None:
        config = file_pb2.FileAccessLog(path=backend.file.path)
        if backend.file.format is not None:
            config.log_format.CopyFrom(_format(backend.file.format))
        return accesslog_pb2.AccessLog(name=FILE_LOGGER, typed_config=pack(config)), None
    otel = backend.open_telemetry
    if otel is None:
        return None, None  # tcp: see the module docstring
    cluster = grpc_collector(otel.endpoint)
    body = otel.body if otel.body is not None else DEFAULT_OTEL_BODY
    config_o = logs_service_pb2.OpenTelemetryAccessLogConfig(
        common_config=als_pb2.CommonGrpcAccessLogConfig(
            log_name="gossamer", grpc_service=envoy_grpc(cluster.name),
            transport_api_version=config_source_pb2.V3),
        body=_any_value(body),
        attributes=otel_pb2.KeyValueList(values=[
            otel_pb2.KeyValue(key=a.key, value=otel_pb2.AnyValue(string_value=a.value))
            for a in otel.attributes or []]))
    return accesslog_pb2.AccessLog(name=OTEL_LOGGER, typed_config=pack(config_o)), cluster


def access_logs(conf: MeshAccessLogConf | None
                ) -> tuple[list[accesslog_pb2.AccessLog], list[cluster_pb2.Cluster]]:
    """The access log entries of ``conf`` and the collector clusters they need."""
    logs: list[accesslog_pb2.AccessLog] = []
    clusters: list[cluster_pb2.Cluster] = []
    for backend in conf.backends if conf else []:
        log, cluster = _backend(backend)
        if log is not None:
            logs.append(log)
        if cluster is not None:
            clusters.append(cluster)
    return logs, clusters
