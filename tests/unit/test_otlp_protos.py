"""The OTLP protos and Envoy's protos in one process.

xds-protos ships an old copy of ``opentelemetry/proto`` without the collector service
stubs (and without ``InstrumentationScope``); installed over ``opentelemetry-proto`` it
breaks the OTLP receiver of the policy tests and the SDK's exporters. The setup must
reinstall ``opentelemetry-proto`` after everything else (``../shared/COMPONENTS.md``).
"""

from __future__ import annotations


def test_otlp_and_envoy_protos_import_together() -> None:
    from envoy.config.trace.v3 import opentelemetry_pb2
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
    from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope

    assert opentelemetry_pb2.OpenTelemetryConfig.DESCRIPTOR.name == "OpenTelemetryConfig"
    assert trace_service_pb2_grpc.TraceServiceServicer.__name__ == "TraceServiceServicer"
    assert InstrumentationScope.DESCRIPTOR.full_name == (
        "opentelemetry.proto.common.v1.InstrumentationScope")
