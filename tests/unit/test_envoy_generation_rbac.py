"""Envoy resource generation (proxy.envoy): inbound RBAC from MeshTrafficPermission (first
match wins, none denies everyone), permissive mTLS, and the client-certificate header.
"""

from __future__ import annotations

from typing import Any

import pytest

from proxy.context import spiffe, tag_uri
from proxy.envoy import ProxyResources
from tests.unit.envoy_inputs import MESH
from tests.unit.envoy_scenarios import _matches, generated, scenario


def _allowed(rbac: Any, uris: set[str]) -> bool:
    assert rbac.action == 0  # ALLOW
    return any(_matches(p, uris) for pol in rbac.policies.values() for p in pol.principals)


def _uris(service: str, **tags: str) -> set[str]:
    return {spiffe(MESH, service)} | {tag_uri(k, v) for k, v in tags.items()}


def _http_rbac(res: ProxyResources) -> Any:
    from envoy.extensions.filters.http.rbac.v3 import rbac_pb2
    from envoy.extensions.filters.network.http_connection_manager.v3 import (
        http_connection_manager_pb2,
    )
    hcm = http_connection_manager_pb2.HttpConnectionManager()
    res.listeners["inbound:10.0.0.1:18080"].filter_chains[0].filters[0].typed_config.Unpack(hcm)
    config = rbac_pb2.RBAC()
    assert hcm.http_filters[0].name == "envoy.filters.http.rbac"
    hcm.http_filters[0].typed_config.Unpack(config)
    return config


@pytest.mark.parametrize(("caller", "allowed", "shadow_allowed"), [
    (_uris("frontend"), True, True),
    (_uris("frontend", version="canary"), False, False),
    (_uris("frontend", team="ops"), True, True),
    (_uris("frontend", team="ops", version="canary"), False, False),
    (_uris("batch", team="ops"), True, False),
    (_uris("batch"), False, False),
])
def test_traffic_permission_is_first_match(caller: set[str], allowed: bool,
                                           shadow_allowed: bool) -> None:
    config = _http_rbac(generated(scenario("traffic-permission")))
    assert _allowed(config.rules, caller) is allowed
    assert _allowed(config.shadow_rules, caller) is shadow_allowed


def test_no_traffic_permission_denies_everyone() -> None:
    from envoy.extensions.filters.network.rbac.v3 import rbac_pb2
    res = generated(scenario("no-permission"))
    filters = res.listeners["inbound:10.0.0.1:15432"].filter_chains[0].filters
    assert [f.name for f in filters] == ["envoy.filters.network.rbac",
                                         "envoy.filters.network.tcp_proxy"]
    config = rbac_pb2.RBAC()
    filters[0].typed_config.Unpack(config)
    assert not config.rules.policies
    assert not _allowed(config.rules, _uris("anyone"))


def test_permissive_accepts_tls_and_plaintext() -> None:
    listener = generated(scenario("permissive")).listeners["inbound:10.0.0.1:18080"]
    assert [c.filter_chain_match.transport_protocol for c in listener.filter_chains] == [
        "tls", "raw_buffer"]
    assert listener.filter_chains[0].HasField("transport_socket")
    assert not listener.filter_chains[1].HasField("transport_socket")
    assert [f.name for f in listener.listener_filters] == ["envoy.filters.listener.tls_inspector"]


@pytest.mark.parametrize("name", ["http", "permissive", "inbounds", "metric", "trace-otel"])
def test_no_connection_manager_passes_on_a_client_certificate_header(name: str) -> None:
    """A client cannot hand the application a forged x-forwarded-client-cert (Envoy's
    default ``SANITIZE`` drops it) and the sidecar adds none: building one per request
    cost the sidecar pair CPU that nothing required (docs/benchmarks.md); RBAC checks
    callers."""
    from envoy.extensions.filters.network.http_connection_manager.v3 import (
        http_connection_manager_pb2,
    )
    hcm_type = http_connection_manager_pb2.HttpConnectionManager
    seen = 0
    for listener in generated(scenario(name)).listeners.values():
        for chain in listener.filter_chains:
            for f in chain.filters:
                if f.name != "envoy.filters.network.http_connection_manager":
                    continue
                hcm = hcm_type()
                f.typed_config.Unpack(hcm)
                assert hcm.forward_client_cert_details == hcm_type.SANITIZE, listener.name
                assert not hcm.HasField("set_current_client_cert_details"), listener.name
                seen += 1
    assert seen >= 1

