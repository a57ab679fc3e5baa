"""MeshTrace → the ``tracing`` block of every HTTP connection manager of the proxy.

The backend picks the tracer: ``OpenTelemetry`` → ``envoy.tracers.opentelemetry``
exporting OTLP/gRPC to a generated ``otlp:<host>:<port>`` cluster; ``Zipkin`` →
``envoy.tracers.zipkin`` posting to the URL's path on a ``zipkin:<host>:<port>`` cluster
(JSON or protobuf, 128-bit ids and shared span context as configured); ``Datadog`` →
``envoy.tracers.datadog`` to a ``datadog:<host>:<port>`` cluster. Spans carry the proxy's
service name. ``sampling.overall``/``client``/``random`` become the connection manager's
``overall_sampling``/``client_sampling``/``random_sampling`` (Envoy's default, 100%,
where unset) and ``tags`` its ``custom_tags`` (a literal, or a request header with a
default). Listeners carry ``traffic_direction``, so an outbound request yields a client
span and an inbound one a server span. A MeshTrace without a backend traces nothing.
"""

from __future__ import annotations

from typing import TypeAlias
from urllib.parse import urlsplit

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.trace.v3 import datadog_pb2, http_tracer_pb2, opentelemetry_pb2, zipkin_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.type.tracing.v3 import custom_tag_pb2

from gossamer.model.meshtrace import BackendType, MeshTraceConf, Tag, ZipkinApiVersion
from proxy.envoy.clusters import grpc_collector, http_collector
from proxy.envoy.protos import boolean, envoy_grpc, pack, percent

OTEL_TRACER = "envoy.tracers.opentelemetry"
ZIPKIN_TRACER = "envoy.tracers.zipkin"
DATADOG_TRACER = "envoy.tracers.datadog"
DEFAULT_ZIPKIN_PATH = "/api/v2/spans"

Tracing: TypeAlias = hcm_pb2.HttpConnectionManager.Tracing


def _custom_tag(tag: Tag) -> custom_tag_pb2.CustomTag:
    if tag.header is not None:
        header = custom_tag_pb2.CustomTag.Header(name=tag.header.name,
                                                 default_value=tag.header.default or "")
        return custom_tag_pb2.CustomTag(tag=tag.name, request_header=header)
    return custom_tag_pb2.CustomTag(tag=tag.name,
                                    literal=custom_tag_pb2.CustomTag.Literal(value=tag.literal))


def _provider(conf: MeshTraceConf, service: str
              ) -> tuple[http_tracer_pb2.Tracing.Http, cluster_pb2.Cluster] | None:
    if not conf.backends:
        return None
    backend = conf.backends[0]
    if backend.type is BackendType.OPEN_TELEMETRY and backend.open_telemetry:
        cluster = grpc_collector(backend.open_telemetry.endpoint)
        otel = opentelemetry_pb2.OpenTelemetryConfig(
            grpc_service=envoy_grpc(cluster.name), service_name=service)
        return http_tracer_pb2.Tracing.Http(name=OTEL_TRACER, typed_config=pack(otel)), cluster
    if backend.type is BackendType.ZIPKIN and backend.zipkin:
        zipkin = backend.zipkin
        cluster = http_collector("zipkin", zipkin.url)
        version = (zipkin_pb2.ZipkinConfig.HTTP_PROTO
                   if zipkin.api_version is ZipkinApiVersion.HTTP_PROTO
                   else zipkin_pb2.ZipkinConfig.HTTP_JSON)
        config = zipkin_pb2.ZipkinConfig(
            collector_cluster=cluster.name,
            collector_endpoint=urlsplit(zipkin.url).path or DEFAULT_ZIPKIN_PATH,
            collector_endpoint_version=version, trace_id_128bit=bool(zipkin.trace_id128bit),
            collector_hostname=urlsplit(zipkin.url).hostname or "")
        if zipkin.shared_span_context is not None:
            config.shared_span_context.CopyFrom(boolean(zipkin.shared_span_context))
        return http_tracer_pb2.Tracing.Http(name=ZIPKIN_TRACER, typed_config=pack(config)), cluster
    if backend.type is BackendType.DATADOG and backend.datadog:
        cluster = http_collector("datadog", backend.datadog.url)
        dd = datadog_pb2.DatadogConfig(
            collector_cluster=cluster.name, service_name=service,
            collector_hostname=urlsplit(backend.datadog.url).hostname or "")
        return http_tracer_pb2.Tracing.Http(name=DATADOG_TRACER, typed_config=pack(dd)), cluster
    return None


def tracing(conf: MeshTraceConf | None, service: str
            ) -> tuple[Tracing | None, cluster_pb2.Cluster | None]:
    """The connection managers' tracing block and its collector cluster, if any."""
    found = _provider(conf, service) if conf is not None else None
    if conf is None or found is None:
        return None, None
    provider, cluster = found
    out = Tracing(provider=provider, custom_tags=[_custom_tag(t) for t in conf.tags or []])
    sampling = conf.sampling
    if sampling and sampling.overall is not None:
        out.overall_sampling.CopyFrom(percent(sampling.overall))
    if sampling and sampling.client is not None:
        out.client_sampling.CopyFrom(percent(sampling.client))
    if sampling and sampling.random is not None:
        out.random_sampling.CopyFrom(percent(sampling.random))
    return out, cluster
