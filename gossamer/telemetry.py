"""The control planes' own traces, exported over OTLP when the standard variables say so.

The code of the control planes opens spans through the OpenTelemetry API
(``trace.get_tracer(...)``: ``sync.delta.send``/``sync.delta.apply`` for the zone sync and
for every xDS push to an Envoy, ``ca.issue`` for a workload certificate). With no SDK
installed those are no-ops. ``install_from_env`` installs one, at the start of
``gossamer global run`` and ``gossamer zone run``, exactly when the operator set one of
the standard ``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``
variables, the way every OpenTelemetry SDK reads them:

* the protocol is ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL``, else
  ``OTEL_EXPORTER_OTLP_PROTOCOL``, else ``http/protobuf`` (the specification's default);
  ``grpc`` and ``http/protobuf`` are supported, anything else is a ``TelemetryError``
  naming the variable and the value (``http/json`` has no Python exporter);
* the endpoint, headers, timeout, TLS certificate and compression are read by the
  exporter itself from the same variables (``OTEL_EXPORTER_OTLP_HEADERS``, ...);
* ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` are honoured by the SDK's
  ``Resource``; we only supply the default service name (``gossamer-global``,
  ``gossamer-zone``) and the zone's name as ``gossamer.zone``;
* ``OTEL_SDK_DISABLED=true`` turns it off; ``OTEL_BSP_*`` tune the batch processor.

Spans leave in batches from a background thread and are flushed when the process exits
(the SDK's ``shutdown_on_exit``), so a stopped control plane does not lose its last ones.
``choose`` is the pure part: which exporter the environment asks for.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal

from gossamer.errors import GossamerError

Protocol = Literal["grpc", "http/protobuf"]
ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
PROTOCOL_VARS = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
DEFAULT_PROTOCOL: Protocol = "http/protobuf"


class TelemetryError(GossamerError):
    """The OTEL_* environment asks for something we cannot export with."""

    http_status = 400
    title = "telemetry configuration error"
    caller_fault = True


def choose(env: Mapping[str, str]) -> Protocol | None:
    """The OTLP protocol to export spans with, or None when no endpoint is configured or
    the SDK is disabled."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if not any(env.get(var, "").strip() for var in ENDPOINT_VARS):
        return None
    for var in PROTOCOL_VARS:
        value = env.get(var, "").strip()
        if not value:
            continue
        if value in ("grpc", "http/protobuf"):
            return value  # type: ignore[return-value]
        raise TelemetryError(f"{var}={value!r}: expected grpc or http/protobuf")
    return DEFAULT_PROTOCOL


def install_from_env(service_name: str, attributes: Mapping[str, str] | None = None,
                     env: Mapping[str, str] | None = None) -> Protocol | None:
    """Install a tracer provider exporting over OTLP if ``env`` (os.environ) configures
    an endpoint; returns the protocol used, or None when tracing stays off."""
    env = os.environ if env is None else env
    protocol = choose(env)
    if protocol is None:
        return None
    # Imported only here: a control plane without OTLP configured never loads them.
    from opentelemetry import trace
    from opentelemetry.sdk.resources import OTELResourceDetector, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    try:
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[assignment]
                OTLPSpanExporter,
            )
    except ImportError as exc:
        raise TelemetryError(_shadowed_proto(exc)) from None
    # Ours first, then OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME over them.
    ours = Resource.create({"service.name": service_name, **(attributes or {})})
    resource = ours.merge(OTELResourceDetector().detect())
    if env.get("OTEL_SERVICE_NAME"):
        resource = resource.merge(Resource({"service.name": env["OTEL_SERVICE_NAME"]}))
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return protocol


def _shadowed_proto(exc: ImportError) -> str:
    """Why the OTLP exporter did not load, and the fix: pip installs xds-protos, which
    ships an old copy of ``opentelemetry/proto``, in no fixed order with
    opentelemetry-proto, and the last one written wins."""
    from importlib import metadata

    try:
        version = metadata.version("opentelemetry-proto")
    except metadata.PackageNotFoundError:
        version = "<the version of opentelemetry-sdk>"
    return (f"OTLP export is configured but its exporter cannot load ({exc}): xds-protos "
            f"overwrote opentelemetry-proto's modules with an old copy; put them back with "
            f"`pip install --force-reinstall --no-deps opentelemetry-proto=={version}`")
