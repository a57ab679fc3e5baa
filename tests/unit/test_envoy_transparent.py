"""The transparent proxy's capture listeners (proxy.envoy.transparent) and the model
fields that ask for them (Dataplane ``networking.transparentProxying``, Mesh
``networking.outbound.passthrough``).

A golden file for one transparent web proxy (``golden/transparent/web.yaml``; regenerate
with ``GOSSAMER_UPDATE_GOLDEN=1`` like the other goldens), then what each part must do:
VIP outbounds become chains and lose their listeners, loopback outbounds keep theirs,
endpoint IPs are captured too, passthrough follows the Mesh, inbound capture dispatches by
port with the inbound listener's own chains.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import yaml
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from gossamer.errors import InvalidResource
from gossamer.model.mesh import MeshSpec
from proxy.context import OutboundListener, ProxyContext
from proxy.envoy import ProxyResources, generate
from proxy.envoy import transparent as tp
from tests.unit.envoy_inputs import WEB_ALL, Scenario
from tests.unit.envoy_scenarios import as_data, context, resource

GOLDEN = Path(__file__).parent / "golden" / "transparent" / "web.yaml"
CAPTURE = """  transparentProxying:
    redirectPortOutbound: 15001
    redirectPortInbound: 15006
"""
WEB_TRANSPARENT = WEB_ALL.rstrip("\n") + "\n" + CAPTURE


def ctx(dataplane: str = WEB_TRANSPARENT, **changes: object) -> ProxyContext:
    mtls = str(changes.pop("mtls_mode", "strict"))
    return dataclasses.replace(context(Scenario("t", dataplane, mtls_mode=mtls)), **changes)


def chains_by_name(listener: listener_pb2.Listener) -> dict[str, listener_pb2.FilterChain]:
    return {c.name: c for c in listener.filter_chains}


def tcp_cluster(chain: listener_pb2.FilterChain) -> str:
    proxy = tcp_proxy_pb2.TcpProxy()
    chain.filters[0].typed_config.Unpack(proxy)
    return proxy.cluster


def test_golden() -> None:
    text = yaml.safe_dump(as_data(generate(ctx())), sort_keys=True, width=100)
    if os.environ.get("GOSSAMER_UPDATE_GOLDEN") == "1" and not os.environ.get("CI"):
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()


def test_vip_outbound_becomes_a_chain_with_its_listeners_filter() -> None:
    plain = generate(ctx(WEB_ALL))
    res = generate(ctx())
    assert "outbound:240.0.0.7:20002" in plain.listeners
    assert "outbound:240.0.0.7:20002" not in res.listeners  # nothing to bind on the VIP
    assert {"outbound:127.0.0.1:20001", "outbound:127.0.0.1:20003"} <= set(res.listeners)
    chain = chains_by_name(res.listeners[tp.OUTBOUND_LISTENER])["db:240.0.0.7:20002"]
    assert chain.filter_chain_match.destination_port.value == 20002
    assert [(r.address_prefix, r.prefix_len.value) for r in chain.filter_chain_match.prefix_ranges
            ] == [("240.0.0.7", 32)]
    assert list(chain.filters) == list(
        plain.listeners["outbound:240.0.0.7:20002"].filter_chains[0].filters)
    assert {"db", "backend", "payments"} <= set(res.clusters)


def test_endpoint_ips_of_called_services_are_captured() -> None:
    listener = generate(ctx()).listeners[tp.OUTBOUND_LISTENER]
    names = set(chains_by_name(listener))
    assert {"backend:10.0.0.2:18080", "backend:10.0.0.3:18080", "backend:10.0.0.4:18080",
            "payments:10.0.0.5:19090", "db:10.0.0.6:15432", "db:10.0.0.7:15432"} <= names
    # a service this proxy has no outbound for is not reached by its IPs through the mesh
    assert not any(n.startswith("backend-canary:") for n in names)


def test_a_zone_pinned_vip_is_a_chain_to_its_zones_cluster_and_not_for_endpoint_ips(
        ) -> None:
    base = ctx()
    pinned = OutboundListener("db", 5432, "240.0.0.9", zone="east")
    listener = generate(dataclasses.replace(base, outbounds=(*base.outbounds, pinned))
                        ).listeners[tp.OUTBOUND_LISTENER]
    chains = chains_by_name(listener)
    assert tcp_cluster(chains["db:240.0.0.9:5432"]) == "db__zeast"
    # db's instances' own addresses stay db's (any zone), not the pinned name's
    assert tcp_cluster(chains["db:10.0.0.6:15432"]) == "db"


def test_listener_shape_and_passthrough() -> None:
    res = generate(ctx())
    out = res.listeners[tp.OUTBOUND_LISTENER]
    assert (out.address.socket_address.address, out.address.socket_address.port_value) == (
        "127.0.0.1", 15001)
    assert [f.name for f in out.listener_filters] == [tp.ORIGINAL_DST]
    assert tcp_cluster(out.default_filter_chain) == tp.PASSTHROUGH_CLUSTER
    assert res.clusters[tp.PASSTHROUGH_CLUSTER].type == res.clusters[
        tp.PASSTHROUGH_CLUSTER].ORIGINAL_DST
    own = chains_by_name(out)[f"{tp.OUTBOUND_LISTENER}:self"]
    assert own.filter_chain_match.destination_port.value == 15001
    assert tcp_cluster(own) == tp.BLACKHOLE_CLUSTER
    assert not res.endpoints.get(tp.BLACKHOLE_CLUSTER)


def test_no_passthrough_means_no_default_chain() -> None:
    out = generate(ctx(passthrough=False)).listeners[tp.OUTBOUND_LISTENER]
    assert not out.HasField("default_filter_chain")
    assert "db:240.0.0.7:20002" in chains_by_name(out)
    inbound = generate(ctx(passthrough=False)).listeners[tp.INBOUND_LISTENER]
    assert tcp_cluster(inbound.default_filter_chain) == tp.PASSTHROUGH_CLUSTER


@pytest.mark.parametrize("mode", ["strict", "permissive"])
def test_inbound_capture_dispatches_by_port(mode: str) -> None:
    res = generate(ctx(mtls_mode=mode))
    listener = res.listeners[tp.INBOUND_LISTENER]
    own = res.listeners["inbound:10.0.0.1:18080"]
    assert listener.address.socket_address.address == "0.0.0.0"
    assert listener.address.socket_address.port_value == 15006
    chains = [c for c in listener.filter_chains if c.filter_chain_match.destination_port
              .value == 18080]
    assert len(chains) == len(own.filter_chains) == (2 if mode == "permissive" else 1)
    for captured, direct in zip(chains, own.filter_chains, strict=True):
        assert list(captured.filters) == list(direct.filters)  # RBAC, policies, route
        assert captured.transport_socket == direct.transport_socket  # mTLS
    filters = [f.name for f in listener.listener_filters]
    assert filters == ([tp.ORIGINAL_DST, "envoy.filters.listener.tls_inspector"]
                       if mode == "permissive" else [tp.ORIGINAL_DST])


def test_a_proxy_without_transparent_proxying_gets_nothing_new() -> None:
    res: ProxyResources = generate(ctx(WEB_ALL))
    assert not {tp.OUTBOUND_LISTENER, tp.INBOUND_LISTENER} & set(res.listeners)
    assert tp.PASSTHROUGH_CLUSTER not in res.clusters


def test_transparent_proxying_defaults_and_round_trip() -> None:
    dp = resource(WEB_ALL.rstrip("\n") + "\n  transparentProxying: {}\n")
    ports = dp.spec.networking.transparent_proxying  # type: ignore[union-attr]
    assert (ports.redirect_port_outbound, ports.redirect_port_inbound) == (15001, 15006)


@pytest.mark.parametrize(("capture", "problem"), [
    ("  transparentProxying: {redirectPortOutbound: 18080}\n",
     "inbound[0].port 18080 is a transparentProxying redirect port"),
    ("  transparentProxying: {redirectPortOutbound: 15006}\n",
     "redirectPortOutbound and redirectPortInbound must differ"),
    ("  transparentProxying: {redirectPortInbound: 0}\n", "redirectPortInbound"),
    ("  transparentProxying: {redirectPortOutbound: 15001, mode: all}\n", "mode"),
])
def test_bad_transparent_proxying_is_refused_with_its_path(capture: str, problem: str) -> None:
    with pytest.raises(InvalidResource) as err:
        resource(WEB_ALL.rstrip("\n") + "\n" + capture)
    assert problem in str(err.value) + str(getattr(err.value, "field_errors", ""))


def test_mesh_passthrough_defaults_to_true() -> None:
    assert MeshSpec().passthrough
    mesh = resource("type: Mesh\nname: m\nnetworking: {outbound: {passthrough: false}}\n")
    assert isinstance(mesh.spec, MeshSpec) and not mesh.spec.passthrough
    with pytest.raises(InvalidResource):
        resource("type: Mesh\nname: m\nnetworking: {outbound: {passthrough: 'no'}}\n")
