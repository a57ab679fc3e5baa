"""Every generated resource is accepted by a real Envoy (``envoy --mode validate``).

For each scenario of ``tests/unit/envoy_scenarios.py`` the generated resources go
into one static bootstrap, as close to what the xDS server sends as a static file allows:

- EDS clusters become STATIC clusters with their generated load assignment inline;
- each HTTP connection manager's RDS reference is replaced by the generated route
  configuration inline (so routes are validated too);
- SDS references keep their secret names but lose their ``sds_config``, which makes them
  point at static secrets: the workload certificate and the trust bundle of a test CA
  made with ``gossamer.pki.certs`` (so the TLS contexts are validated with real PEM);
- the bootstrap defines the clusters the agent's bootstrap will: ``ADMIN_CLUSTER``.

Validation mode builds every listener, cluster, filter and TLS context without binding
ports or connecting anywhere: an unknown field, a wrong ``typed_config`` or a value
Envoy's validation rules refuse fails here, where the xDS server would get a NACK.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gossamer.pki import certs
from proxy.context import (
    ADMIN_CLUSTER,
    IDENTITY_SECRET,
    PROMETHEUS_TLS_SECRET,
    TRUST_SECRET,
    spiffe,
    tag_uri,
)
from proxy.envoy_binary import EnvoyNotFound, envoy_binary
from tests.unit.envoy_scenarios import (
    SCENARIO_NAMES,
    SCENARIOS,
    Scenario,
    as_data,
    generated,
)

HCM_TYPE = ("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager"
            ".v3.HttpConnectionManager")


@pytest.fixture(scope="module")
def envoy() -> Path:
    try:
        return envoy_binary()
    except EnvoyNotFound as exc:
        pytest.fail(f"the Envoy binary is required for this test: {exc}")


@pytest.fixture(scope="module")
def secrets() -> list[dict[str, Any]]:
    now = dt.datetime.now(dt.UTC)
    root = certs.new_root_ca("test mesh", now, dt.timedelta(days=1))
    leaf = certs.new_leaf(root, "web", now, dt.timedelta(hours=1),
                          uris=[spiffe("default", "web"), tag_uri("version", "v1")])
    identity = {"certificate_chain": {"inline_string": leaf.cert_pem().decode()},
                "private_key": {"inline_string": leaf.key_pem().decode()}}
    return [
        {"name": IDENTITY_SECRET, "tls_certificate": identity},
        {"name": PROMETHEUS_TLS_SECRET, "tls_certificate": identity},
        {"name": TRUST_SECRET, "validation_context": {
            "trusted_ca": {"inline_string": root.cert_pem().decode()}}},
    ]


def _walk(node: Any, visit: Any) -> None:
    if isinstance(node, dict):
        visit(node)
        for value in node.values():
            _walk(value, visit)
    elif isinstance(node, list):
        for value in node:
            _walk(value, visit)


def static_bootstrap(data: dict[str, Any], secrets: list[dict[str, Any]]) -> dict[str, Any]:
    routes = data["routes"]
    endpoints = data["endpoints"]

    def inline(node: dict[str, Any]) -> None:
        if node.get("@type") == HCM_TYPE and "rds" in node:
            node["route_config"] = routes[node.pop("rds")["route_config_name"]]
        if "sds_config" in node and "name" in node:
            del node["sds_config"]

    listeners = list(data["listeners"].values())
    clusters = []
    for cluster in data["clusters"].values():
        if cluster.get("type") == "EDS":
            cluster = {k: v for k, v in cluster.items() if k != "eds_cluster_config"}
            cluster["type"] = "STATIC"
            cluster["load_assignment"] = endpoints[cluster["name"]]
        clusters.append(cluster)
    _walk(listeners, inline)
    _walk(clusters, inline)
    clusters.append({"name": ADMIN_CLUSTER, "type": "STATIC", "load_assignment": {
        "cluster_name": ADMIN_CLUSTER, "endpoints": [{"lb_endpoints": [{"endpoint": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": 9901}}}}]}]}})
    return {
        "node": {"id": "web-1", "cluster": "web"},
        "static_resources": {"listeners": listeners, "clusters": clusters, "secrets": secrets},
    }


def validate(envoy: Path, bootstrap: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps(bootstrap, indent=1))
    proc = subprocess.run(
        [str(envoy), "--mode", "validate", "-c", str(path), "--log-level", "warn",
         "--use-dynamic-base-id"],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, (
        f"Envoy refused the generated config (exit {proc.returncode}):\n"
        f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")


@pytest.mark.parametrize("scenario", SCENARIOS, ids=SCENARIO_NAMES)
def test_envoy_accepts(scenario: Scenario, envoy: Path, secrets: list[dict[str, Any]],
                       tmp_path: Path) -> None:
    data = as_data(generated(scenario))
    assert data["listeners"], "a scenario without listeners validates nothing"
    validate(envoy, static_bootstrap(data, secrets), tmp_path)


def test_envoy_refuses_a_broken_config(envoy: Path, secrets: list[dict[str, Any]],
                                       tmp_path: Path) -> None:
    """The harness can fail: a cluster with an unknown lb_policy is refused."""
    data = as_data(generated(SCENARIOS[0]))
    bootstrap = static_bootstrap(data, secrets)
    bootstrap["static_resources"]["clusters"][0]["lb_policy"] = "NO_SUCH_POLICY"
    with pytest.raises(AssertionError, match="refused"):
        validate(envoy, bootstrap, tmp_path)
