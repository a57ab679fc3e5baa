"""Envoy's bootstrap for a sidecar: golden files, and the parts that vary with --cp.

Regenerate the golden files with ``GOSSAMER_UPDATE_GOLDEN=1`` and review the diff. Envoy
itself checks the same bootstraps in ``tests/integration/test_agent.py``."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.agent.bootstrap import BootstrapParams, EnvoyLimits, bootstrap, render, write
from proxy.context import ADMIN_CLUSTER, ADS_CLUSTER, SDS_CLUSTER

GOLDEN = Path(__file__).parent / "golden" / "agent"
CA_PEM = (GOLDEN / "cp-ca.pem").read_text()


def params(cp_host: str = "127.0.0.1", **overrides: Any) -> BootstrapParams:
    values: dict[str, Any] = dict(
        node_id="default.backend-1", mesh="default", dataplane="backend-1", zone="lab",
        service="backend", cp_host=cp_host, cp_port=5678, cp_ca_pem=CA_PEM,
        token="eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJiYWNrZW5kIn0.c2ln",
        sds_socket="/var/run/gossamer/proxy-backend-1/sds.sock", admin_port=9901,
        limits=EnvoyLimits())
    values.update(overrides)
    return BootstrapParams(**values)


CASES = {"bootstrap-ip.yaml": params(), "bootstrap-dns.yaml": params("zone-cp.example.com")}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name: str) -> None:
    text = render(bootstrap(CASES[name]))
    path = GOLDEN / name
    if os.environ.get("GOSSAMER_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed; rerun with GOSSAMER_UPDATE_GOLDEN=1"


def cluster(doc: dict[str, Any], name: str) -> dict[str, Any]:
    found = [c for c in doc["static_resources"]["clusters"] if c["name"] == name]
    assert len(found) == 1
    return found[0]


def test_the_control_plane_is_verified_by_its_name_and_ca() -> None:
    by_ip = cluster(bootstrap(params()), ADS_CLUSTER)
    tls = by_ip["transport_socket"]["typed_config"]
    assert by_ip["type"] == "STATIC"
    assert "sni" not in tls  # an IP literal is not a valid SNI
    validation = tls["common_tls_context"]["validation_context"]
    assert validation["trusted_ca"] == {"inline_string": CA_PEM}
    assert validation["match_typed_subject_alt_names"] == [
        {"san_type": "IP_ADDRESS", "matcher": {"exact": "127.0.0.1"}}]

    by_name = cluster(bootstrap(params("zone-cp.example.com")), ADS_CLUSTER)
    tls = by_name["transport_socket"]["typed_config"]
    assert by_name["type"] == "STRICT_DNS"
    assert tls["sni"] == "zone-cp.example.com"
    assert tls["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"] == [
        {"san_type": "DNS", "matcher": {"exact": "zone-cp.example.com"}}]


def test_ads_carries_the_token_and_the_node() -> None:
    doc = bootstrap(params(admin_port=15000))
    ads = doc["dynamic_resources"]["ads_config"]
    assert ads["api_type"] == "DELTA_GRPC"
    assert ads["grpc_services"] == [{
        "envoy_grpc": {"cluster_name": ADS_CLUSTER},
        "initial_metadata": [{"key": "authorization", "value": f"Bearer {params().token}"}]}]
    assert doc["node"]["id"] == "default.backend-1"
    assert doc["node"]["locality"] == {"zone": "lab"}
    assert doc["admin"]["address"]["socket_address"] == {"address": "127.0.0.1",
                                                         "port_value": 15000}
    admin = cluster(doc, ADMIN_CLUSTER)["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    assert admin["endpoint"]["address"]["socket_address"]["port_value"] == 15000
    sds = cluster(doc, SDS_CLUSTER)["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    assert sds["endpoint"]["address"] == {"pipe": {"path": params().sds_socket}}


def test_ipv6_control_plane() -> None:
    ads = cluster(bootstrap(params("::1")), ADS_CLUSTER)
    san = ads["transport_socket"]["typed_config"]["common_tls_context"]["validation_context"][
        "match_typed_subject_alt_names"]
    assert san == [{"san_type": "IP_ADDRESS", "matcher": {"exact": "::1"}}]


def test_written_private_and_without_yaml_aliases(tmp_path: Path) -> None:
    path = tmp_path / "envoy.yaml"
    write(path, bootstrap(params()))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert "&id" not in text and "*id" not in text
    assert yaml.safe_load(text) == bootstrap(params())
