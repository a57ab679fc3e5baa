"""The pure parts of the control planes' telemetry: which OTLP exporter the environment
asks for (``gossamer.telemetry.choose``), delivery latency and NACK counting
(``sync.deliveries``), and the ``http_sd`` target groups of a sidecar's generated config
(``zone_cp.http_sd.target_groups``)."""

from __future__ import annotations

import pytest
from envoy.config.listener.v3 import listener_components_pb2 as lc_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc_pb2
from envoy.config.route.v3 import route_pb2
from envoy.service.discovery.v3 import discovery_pb2
from hypothesis import given
from hypothesis import strategies as st

from gossamer.telemetry import TelemetryError, choose
from proxy.envoy.protos import socket_address
from proxy.envoy.resources import ProxyResources
from sync.deliveries import BUCKETS, Deliveries, Histogram
from sync.outcomes import Outcome
from zone_cp.http_sd import Sidecar, target_groups

# -- choose ----------------------------------------------------------------------------


@pytest.mark.parametrize(("env", "expected"), [
    ({}, None),
    ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, None),  # no endpoint: nothing to export to
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, "http/protobuf"),  # the spec's default
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4317",
      "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "grpc"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
      "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}, "http/protobuf"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_SDK_DISABLED": "true"}, None),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}, None),
])
def test_choose(env: dict[str, str], expected: str | None) -> None:
    assert choose(env) == expected


def test_choose_refuses_a_protocol_without_an_exporter() -> None:
    with pytest.raises(TelemetryError, match=r"OTEL_EXPORTER_OTLP_PROTOCOL='http/json'"):
        choose({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c", "OTEL_EXPORTER_OTLP_PROTOCOL":
                "http/json"})


# -- deliveries ------------------------------------------------------------------------

def _response(nonce: str) -> discovery_pb2.DeltaDiscoveryResponse:
    return discovery_pb2.DeltaDiscoveryResponse(type_url="t/Cluster", nonce=nonce)


def _answer(nonce: str, nack: bool = False) -> discovery_pb2.DeltaDiscoveryRequest:
    request = discovery_pb2.DeltaDiscoveryRequest(type_url="t/Cluster", response_nonce=nonce)
    if nack:
        request.error_detail.code = 3
    return request


def test_an_ack_records_the_time_since_its_response() -> None:
    d = Deliveries()
    d.observe("s1", "sidecar", _response("1"), Outcome.SENT, now=10.0)
    d.observe("s1", "sidecar", _response("2"), Outcome.SENT, now=10.5)
    d.observe("s1", "sidecar", _answer("2"), Outcome.ACKED, now=10.75)
    d.observe("s1", "sidecar", _answer("1", nack=True), Outcome.NACKED, now=11.0)
    h = d.latency["sidecar"]
    assert (h.count, h.total) == (2, 1.25)
    assert d.nacks == {("sidecar", "t/Cluster"): 1}
    assert d.pending("s1") == 0
    # Answered twice, or never sent: not timed again.
    assert d.answered("s1", "sidecar", "2", "t/Cluster", False, now=12.0) is None


def test_pending_nonces_are_bounded_and_forgotten() -> None:
    d = Deliveries(max_pending=2)
    for n in range(5):
        d.sent("s", str(n), float(n))
    assert d.pending("s") == 2
    assert d.answered("s", "x", "0", "t", False, 9.0) is None  # the oldest were dropped
    assert d.answered("s", "x", "4", "t", False, 9.0) == 5.0
    d.forget("s")
    assert d.pending("s") == 0


def test_a_bucket_holds_values_up_to_and_including_its_bound() -> None:
    h = Histogram((1.0, 2.0))
    for value in (0.5, 1.0, 1.5, 2.0, 3.0):
        h.observe(value)
    assert h.buckets() == [("1.0", 2), ("2.0", 4), ("+Inf", 5)]


@given(st.lists(st.floats(min_value=0, max_value=100, allow_nan=False)))
def test_buckets_are_cumulative_and_end_with_the_count(values: list[float]) -> None:
    h = Histogram(BUCKETS)
    for v in values:
        h.observe(v)
    counts = [n for _, n in h.buckets()]
    assert counts == sorted(counts) and counts[-1] == len(values) == h.count
    for (bound, n) in h.buckets()[:-1]:
        assert n == sum(1 for v in values if v <= float(bound))


# -- http_sd target groups -------------------------------------------------------------

def _metrics_listener(address: str, port: int, path: str,
                      tls: bool = False) -> ProxyResources:
    name = f"prometheus:{port}"
    chain = lc_pb2.FilterChain()
    if tls:
        chain.transport_socket.name = "envoy.transport_sockets.tls"
    listener = listener_pb2.Listener(name=name, address=socket_address(address, port),
                                     filter_chains=[chain])
    route = route_pb2.RouteConfiguration(name=name, virtual_hosts=[rc_pb2.VirtualHost(
        name="prometheus", domains=["*"], routes=[
            rc_pb2.Route(match=rc_pb2.RouteMatch(path=path),
                         route=rc_pb2.RouteAction(cluster="gossamer_admin")),
            rc_pb2.Route(match=rc_pb2.RouteMatch(prefix="/"),
                         direct_response=rc_pb2.DirectResponseAction(status=404))])])
    other = listener_pb2.Listener(name="inbound:10.0.0.1:8080")
    return ProxyResources(listeners={name: listener, other.name: other},
                          routes={name: route})


def test_target_groups_name_address_path_scheme_and_meta_labels() -> None:
    groups = target_groups([
        Sidecar("m", "a", "z", ("api", "web"), _metrics_listener("10.0.0.1", 5670, "/m")),
        Sidecar("m", "b", "z", ("db",), _metrics_listener("fd00::2", 9090, "/s", tls=True)),
        Sidecar("m", "c", "z", ("x",), ProxyResources())])  # no MeshMetric: no target
    assert groups == [
        {"targets": ["10.0.0.1:5670"], "labels": {
            "__metrics_path__": "/m", "__scheme__": "http", "__meta_gossamer_mesh": "m",
            "__meta_gossamer_dataplane": "a", "__meta_gossamer_service": "api,web",
            "__meta_gossamer_zone": "z"}},
        {"targets": ["[fd00::2]:9090"], "labels": {
            "__metrics_path__": "/s", "__scheme__": "https", "__meta_gossamer_mesh": "m",
            "__meta_gossamer_dataplane": "b", "__meta_gossamer_service": "db",
            "__meta_gossamer_zone": "z"}}]
