"""Ports across zones without sockets: the ZoneIngress model, what an ingress offers, the
DNS table's ports, and the listeners, clusters and SNIs a sidecar and an ingress get for
a service with one port and with several (``proxy.envoy.ports``)."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from gossamer.errors import InvalidResource
from gossamer.model.registry import parse_document
from gossamer.store.memory import MemoryStore
from proxy.envoy.generate import generate
from proxy.envoy.resources import ProxyResources
from tests.builders import dataplane_doc, inbound
from zone_cp.ingresses import available_services
from zone_cp.mesh_dns import VipView, dns_table, vip_outbounds
from zone_cp.mesh_state import MeshState
from zone_ingress.envoy import IngressContext, generate_ingress

HTTP = {"gossamer.io/protocol": "http"}
TCP = {"gossamer.io/protocol": "tcp"}


def ingress(zone: str, address: str, service: str, ports: list[dict[str, Any]],
            protocol: str = "tcp") -> dict[str, Any]:
    """Another zone's ingress offering ``service`` on ``ports``."""
    return {"type": "ZoneIngress", "name": f"{zone}-ingress",
            "labels": {"gossamer.io/zone": zone, "gossamer.io/origin": "zone"},
            "networking": {"address": address, "port": 10001},
            "availableServices": [{"mesh": "default", "instances": 2, "ports": ports,
                                   "tags": {"gossamer.io/service": service,
                                            "gossamer.io/protocol": protocol}}]}


def vip(service: str, ip: str) -> dict[str, Any]:
    return {"type": "VirtualIP", "mesh": "default", "name": service, "ip": ip,
            "labels": {"gossamer.io/service": service}}


def state_of(*docs: dict[str, Any], zone: str = "west") -> MeshState:
    state = MeshState(MemoryStore(), zone)
    state._reset([parse_document(d) for d in docs])
    return state


def client() -> dict[str, Any]:
    return dataplane_doc("web-1", "web", address="10.0.0.1", tags=HTTP)


def sidecar(state: MeshState, doc: dict[str, Any]) -> ProxyResources:
    """What the zone CP generates for ``doc``'s sidecar, VIP listeners included."""
    res = parse_document(doc)
    extra = vip_outbounds(VipView(state).of("default"), res)
    return generate(state.context_for(res, extra))


def sni_of(resources: ProxyResources, cluster: str) -> str:
    ctx = tls_pb2.UpstreamTlsContext()
    resources.clusters[cluster].transport_socket.typed_config.Unpack(ctx)
    return ctx.sni


def tcp_cluster(resources: ProxyResources, listener: str) -> str:
    proxy = tcp_proxy_pb2.TcpProxy()
    chain = resources.listeners[listener].filter_chains[0]
    chain.filters[0].typed_config.Unpack(proxy)
    return proxy.cluster


def addresses(resources: ProxyResources, cluster: str) -> list[tuple[str, int]]:
    assignment = resources.endpoints[cluster]
    return [(e.endpoint.address.socket_address.address,
             e.endpoint.address.socket_address.port_value)
            for group in assignment.endpoints for e in group.lb_endpoints]


# -- the model ------------------------------------------------------------------------

def test_an_available_service_carries_ports_and_refuses_bad_ones() -> None:
    doc = ingress("east", "192.168.1.1", "db", [{"port": 5432}, {"port": 80,
                                                                  "protocol": "http"}])
    spec = parse_document(doc).spec
    ports = spec.available_services[0].ports  # type: ignore[attr-defined]
    assert [(p.port, p.protocol) for p in ports] == [(5432, "tcp"), (80, "http")]
    for bad, words in (([{"port": 5432}, {"port": 5432}], "once"),
                       ([{"port": 0}], "port"), ([{"port": 1, "protocol": "udp"}], "protocol")):
        with pytest.raises(InvalidResource) as caught:
            parse_document(ingress("east", "192.168.1.1", "db", bad))
        assert words in str(caught.value.field_errors) + caught.value.detail


def test_an_ingress_offers_each_local_service_with_its_ports() -> None:
    state = state_of(
        dataplane_doc("db-1", "db", address="10.0.0.2", port=15432, service_port=5432,
                      tags=TCP),
        dataplane_doc("api-1", "api", address="10.0.0.3", inbounds=[
            inbound("api", 18080, 8080, **HTTP), inbound("api", 18081, 8081, **HTTP)]),
        dataplane_doc("api-2", "api", address="10.0.0.4", inbounds=[
            inbound("api", 18080, 8080, **HTTP)]),
        dataplane_doc("raw-1", "raw", address="10.0.0.5", port=9000, service_port=None))
    offered = {a.tags["gossamer.io/service"]: a
               for a in available_services({"default": state.services("default")})}
    assert [(p.port, p.protocol) for p in offered["db"].ports] == [(5432, "tcp")]
    assert [p.port for p in offered["api"].ports] == [8080, 8081]
    assert offered["api"].instances == 3  # inbounds, as before
    assert [p.port for p in offered["raw"].ports] == [9000]  # no servicePort: the port


# -- the DNS table --------------------------------------------------------------------

def test_a_remote_only_service_resolves_with_its_own_ports() -> None:
    state = state_of(client(), vip("db", "240.0.0.9"), vip("web", "240.0.0.1"),
                     ingress("east", "192.168.1.1", "db", [{"port": 5432}]))
    table = dns_table(VipView(state).of("default"))
    ports = {e.name: e.ports for e in table.entries}
    assert ports == {"db.mesh": (80, 5432), "web.mesh": (80, 8080)}


def test_an_older_zone_without_ports_is_reached_on_port_80() -> None:
    state = state_of(client(), vip("db", "240.0.0.9"),
                     ingress("east", "192.168.1.1", "db", []))
    assert {e.name: e.ports for e in dns_table(VipView(state).of("default")).entries}[
        "db.mesh"] == (80,)


# -- a sidecar's listeners and clusters -----------------------------------------------

def test_a_remote_single_port_service_keeps_one_cluster_and_its_sni() -> None:
    state = state_of(client(), vip("db", "240.0.0.9"),
                     ingress("east", "192.168.1.1", "db", [{"port": 5432}]))
    out = sidecar(state, client())
    assert tcp_cluster(out, "outbound:240.0.0.9:5432") == "db"
    assert tcp_cluster(out, "outbound:240.0.0.9:80") == "db"
    assert sni_of(out, "db") == "db.default.mesh"
    assert addresses(out, "db") == [("192.168.1.1", 10001)]
    assert not [c for c in out.clusters if "__p" in c]


def test_each_port_of_a_service_with_several_gets_its_own_cluster_and_sni() -> None:
    # api runs here on 8080 and in east on 8080 and 9090.
    state = state_of(
        client(), vip("api", "240.0.0.7"),
        dataplane_doc("api-1", "api", address="10.0.0.3", inbounds=[
            inbound("api", 18080, 8080, **TCP)]),
        ingress("east", "192.168.1.1", "api", [{"port": 8080}, {"port": 9090}]))
    out = sidecar(state, client())
    assert tcp_cluster(out, "outbound:240.0.0.7:8080") == "api__p8080"
    assert tcp_cluster(out, "outbound:240.0.0.7:9090") == "api__p9090"
    assert tcp_cluster(out, "outbound:240.0.0.7:80") == "api"  # not a port of it: all
    assert sni_of(out, "api__p9090") == "9090.api.default.mesh"
    assert sni_of(out, "api") == "api.default.mesh"
    assert addresses(out, "api__p8080") == [("10.0.0.3", 18080), ("192.168.1.1", 10001)]
    assert addresses(out, "api__p9090") == [("192.168.1.1", 10001)]  # not served here


def test_an_http_service_with_two_ports_routes_each_port_to_its_cluster() -> None:
    state = state_of(
        client(), vip("api", "240.0.0.7"),
        ingress("east", "192.168.1.1", "api", [{"port": 8080, "protocol": "http"},
                                               {"port": 8081, "protocol": "http"}],
                protocol="http"))
    out = sidecar(state, client())
    for port in (8080, 8081):
        route = out.routes[f"outbound:api:{port}"]
        assert route.virtual_hosts[0].routes[-1].route.cluster == f"api__p{port}"
        assert sni_of(out, f"api__p{port}") == f"{port}.api.default.mesh"
    assert out.routes["outbound:api"].virtual_hosts[0].routes[-1].route.cluster == "api"


# -- the ingress ----------------------------------------------------------------------

def ingress_of(state: MeshState) -> ProxyResources:
    return generate_ingress(IngressContext(name="east-1", zone="east", address="0.0.0.0",
                                           port=10001,
                                           services={"default": state.services("default")}))


def chains(resources: ProxyResources) -> dict[str, tuple[list[str], str]]:
    listener = next(iter(resources.listeners.values()))
    out = {}
    for chain in listener.filter_chains:
        proxy = tcp_proxy_pb2.TcpProxy()
        chain.filters[0].typed_config.Unpack(proxy)
        out[chain.name] = (list(chain.filter_chain_match.server_names), proxy.cluster)
    return out


def test_an_ingress_answers_a_single_port_service_by_either_name() -> None:
    state = state_of(dataplane_doc("db-1", "db", address="10.0.0.2", port=15432,
                                   service_port=5432), zone="east")
    out = ingress_of(state)
    assert chains(out) == {"db.default.mesh": (
        ["db.default.mesh", "5432.db.default.mesh"], "db.default.mesh")}
    assert addresses(out, "db.default.mesh") == [("10.0.0.2", 15432)]


def test_an_ingress_sends_each_port_sni_to_the_instances_of_that_port() -> None:
    state = state_of(
        dataplane_doc("api-1", "api", address="10.0.0.3", inbounds=[
            inbound("api", 18080, 8080), inbound("api", 18081, 8081)]),
        dataplane_doc("api-2", "api", address="10.0.0.4"), zone="east")  # 8080 only
    out = ingress_of(state)
    assert chains(out) == {
        "api.default.mesh": (["api.default.mesh"], "api.default.mesh"),
        "8080.api.default.mesh": (["8080.api.default.mesh"], "8080.api.default.mesh"),
        "8081.api.default.mesh": (["8081.api.default.mesh"], "8081.api.default.mesh")}
    assert addresses(out, "8080.api.default.mesh") == [("10.0.0.3", 18080),
                                                       ("10.0.0.4", 18080)]
    assert addresses(out, "8081.api.default.mesh") == [("10.0.0.3", 18081)]
    assert len(addresses(out, "api.default.mesh")) == 3
