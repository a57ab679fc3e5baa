"""zone_cp.xds: a proxy's generated resources as the delta engine's entries, and what the
engine then sends an Envoy (no sockets: the engine is pure)."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2 as ec_pb2
from envoy.config.endpoint.v3 import endpoint_pb2

from proxy.envoy.protos import socket_address
from proxy.envoy.resources import CLUSTER_TYPE, ENDPOINT_TYPE, ProxyResources
from sync.engine import Engine
from sync.messages import Request, Response
from zone_cp.xds_resources import desired_entries, encode

_C = cluster_pb2.Cluster


def proxy(lb_policy: int = _C.ROUND_ROBIN, port: int = 18080,
          assignment: str = "backend") -> ProxyResources:
    cluster = _C(name="backend", type=_C.EDS, lb_policy=lb_policy)  # type: ignore[arg-type]
    cla = endpoint_pb2.ClusterLoadAssignment(cluster_name=assignment, endpoints=[
        ec_pb2.LocalityLbEndpoints(lb_endpoints=[ec_pb2.LbEndpoint(
            endpoint=ec_pb2.Endpoint(address=socket_address("10.0.0.2", port)))])])
    return ProxyResources(clusters={"backend": cluster}, endpoints={assignment: cla})


def load(engine: Engine, resources: ProxyResources) -> None:
    for type_url, entries in desired_entries(resources).items():
        engine.set_desired(type_url, entries)


def in_sync(resources: ProxyResources) -> tuple[Engine, Response]:
    """An engine whose one subscriber (Envoy's order: CDS, then EDS) ACKed everything;
    also the EDS response it ACKed."""
    engine = Engine()
    engine.connect("envoy")
    load(engine, resources)
    [cds] = engine.on_request("envoy", Request(CLUSTER_TYPE), 0)
    [eds] = engine.on_request("envoy", Request(ENDPOINT_TYPE, subscribe=frozenset({"backend"})), 0)
    assert engine.on_request("envoy", Request(CLUSTER_TYPE, response_nonce=cds.nonce), 0) == []
    assert engine.on_request("envoy", Request(ENDPOINT_TYPE, response_nonce=eds.nonce), 0) == []
    return engine, eds


def test_an_updated_cluster_is_followed_by_its_unchanged_load_assignment() -> None:
    # Envoy warms the new cluster until its assignment arrives again (delta xDS: it does
    # not ask for it), so the assignment must be re-sent, after the cluster.
    engine, eds = in_sync(proxy())
    load(engine, proxy(lb_policy=_C.RING_HASH))
    sent = engine.pending("envoy", 0)
    assert [r.type_url for r in sent] == [CLUSTER_TYPE, ENDPOINT_TYPE]
    assert sent[1].resources["backend"].payload == eds.resources["backend"].payload


def test_changed_endpoints_alone_send_only_the_load_assignment() -> None:
    engine, _ = in_sync(proxy())
    load(engine, proxy(port=18081))
    assert [r.type_url for r in engine.pending("envoy", 0)] == [ENDPOINT_TYPE]


def test_nothing_changed_sends_nothing_and_versions_are_stable() -> None:
    engine, _ = in_sync(proxy())
    load(engine, proxy())
    assert engine.pending("envoy", 0) == []
    assert desired_entries(proxy()) == desired_entries(proxy())


def test_an_assignment_without_a_cluster_of_its_name_keeps_its_own_version() -> None:
    resources = proxy(assignment="elsewhere")
    entry = desired_entries(resources)[ENDPOINT_TYPE]["elsewhere"]
    assert entry == encode(resources.endpoints["elsewhere"], ENDPOINT_TYPE)
