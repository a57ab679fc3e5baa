"""The zone ingress's Envoy resources without sockets: golden files per scenario and
behaviour (one filter chain per routable service matching its SNI, no TLS termination or
secret, local instances only, a new instance changing one load assignment).

Regenerate the goldens after an intended change with ``GOSSAMER_UPDATE_GOLDEN=1 pytest
tests/unit/test_ingress_resources.py`` and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from proxy.context import SDS_CLUSTER, Service
from proxy.envoy.resources import ENDPOINT_TYPE, ProxyResources
from tests.unit.ingress_scenarios import (
    SCENARIO_NAMES,
    SCENARIOS,
    SERVICES,
    Scenario,
    as_data,
    endpoint,
)
from zone_ingress.envoy import IngressContext, generate_ingress

GOLDEN_DIR = Path(__file__).parent / "golden" / "ingress"


UPDATE = os.environ.get("GOSSAMER_UPDATE_GOLDEN") == "1"


def as_yaml(resources: ProxyResources) -> str:
    import yaml

    return yaml.safe_dump(as_data(resources), sort_keys=True, width=100)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=SCENARIO_NAMES)
def test_golden(scenario: Scenario) -> None:
    path = GOLDEN_DIR / f"{scenario.name}.yaml"
    text = as_yaml(generate_ingress(scenario.ctx))
    if UPDATE and not os.environ.get("CI"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"no golden {path}; run with GOSSAMER_UPDATE_GOLDEN=1 and review it"
    assert text == path.read_text(), (
        f"{scenario.name}: generated resources differ from {path}; if the change is "
        "intended, regenerate with GOSSAMER_UPDATE_GOLDEN=1 and review the diff")


def test_no_stale_goldens() -> None:
    assert {p.stem for p in GOLDEN_DIR.glob("*.yaml")} == set(SCENARIO_NAMES)


def _strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [*node.keys(), *(s for v in node.values() for s in _strings(v))]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return [node] if isinstance(node, str) else []


def test_one_chain_per_routable_service_matching_its_sni() -> None:
    data = as_data(generate_ingress(SCENARIOS[0].ctx))
    [listener] = data["listeners"].values()
    chains = {tuple(c["filter_chain_match"]["server_names"]): c for c in listener["filter_chains"]}
    assert sorted(chains) == [("backend.default.mesh",), ("grpc-api.default.mesh",),
                              ("ledger.payments.mesh",)]
    for (server_name,), chain in chains.items():
        assert chain["filter_chain_match"]["transport_protocol"] == "tls"
        [proxy] = chain["filters"]
        assert proxy["typed_config"]["cluster"] == server_name
    assert [f["name"] for f in listener["listener_filters"]] == [
        "envoy.filters.listener.tls_inspector"]
    assert listener["default_filter_chain"]["filters"][0]["name"] == (
        "envoy.filters.network.direct_response")
    assert sorted(data["clusters"]) == sorted(data["endpoints"]) == sorted(
        name for (name,) in chains)


def test_nothing_terminates_tls_or_holds_a_secret() -> None:
    for scenario in SCENARIOS:
        text = " ".join(_strings(as_data(generate_ingress(scenario.ctx))))
        for word in ("transport_socket", "sds", "tls_certificate", "DownstreamTlsContext",
                     "UpstreamTlsContext", SDS_CLUSTER):
            assert word not in text, (scenario.name, word)


def test_the_ingress_sends_to_local_instances_only() -> None:
    data = as_data(generate_ingress(SCENARIOS[0].ctx))
    backend = data["endpoints"]["backend.default.mesh"]
    [locality] = backend["endpoints"]
    assert locality["locality"] == {"zone": "east"}
    addresses = [e["endpoint"]["address"]["socket_address"] for e in locality["lb_endpoints"]]
    assert addresses == [{"address": "10.0.0.1", "port_value": 18080},
                         {"address": "10.0.0.2", "port_value": 18080}]
    assert "192.168.1.1" not in json.dumps(data)  # the other zone's ingress: never


def test_a_new_instance_changes_one_load_assignment_only() -> None:
    before = generate_ingress(SCENARIOS[0].ctx)
    services = {m: dict(s) for m, s in SERVICES.items()}
    ledger = services["payments"]["ledger"]
    services["payments"]["ledger"] = Service("ledger", "tcp", (
        *ledger.endpoints, endpoint("10.1.0.2", 15432, "ledger")))
    after = generate_ingress(IngressContext("east-ingress", "east", "0.0.0.0", 10001, services))
    changed = [(t, n) for t, n, m in after.items() if before.by_type()[t].get(n) != m]
    assert changed == [(ENDPOINT_TYPE, "ledger.payments.mesh")]

