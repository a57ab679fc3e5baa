"""The zone-ingress agent without sockets: the document it registers, its bootstrap (the
sidecar's without SDS), its default name (from the zone token) and its command's input
checks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cli.main import main
from cli.run_ingress import zone_of
from proxy.agent.cp_client import ControlPlaneAddress, Registration
from proxy.agent.errors import InputError
from proxy.context import SDS_CLUSTER
from tests.unit.ingress_scenarios import KEY
from zone_ingress.agent import IngressSettings, ingress_bootstrap


def settings(**overrides: Any) -> IngressSettings:
    values: dict[str, Any] = dict(
        name="east-ingress", cp=ControlPlaneAddress("zone-cp.example.com", 5678), token="a.b.c",
        cp_ca_pem=b"-----BEGIN CERTIFICATE-----\n", address="0.0.0.0", port=10001,
        advertised=("203.0.113.7", 443), work_dir=Path("/tmp/ingress-unit"),
        envoy_binary=Path("/bin/true"), admin_port=9902)
    return IngressSettings(**{**values, **overrides})


def test_the_registered_document() -> None:
    assert json.loads(settings().registration_json()) == {
        "type": "ZoneIngress", "name": "east-ingress",
        "networking": {"address": "0.0.0.0", "port": 10001,
                       "advertisedAddress": "203.0.113.7", "advertisedPort": 443}}
    plain = json.loads(settings(address="10.0.0.9", advertised=None).registration_json())
    assert plain["networking"] == {"address": "10.0.0.9", "port": 10001}
    with pytest.raises(InputError, match="no valid ZoneIngress"):
        settings(advertised=("not_a host", 443)).registration_json()


def test_the_bootstrap_is_the_sidecars_without_sds() -> None:
    doc = ingress_bootstrap(settings(), Registration("", "east-ingress", "east",
                                                     "ingress:east-ingress"))
    assert doc["node"]["id"] == "ingress:east-ingress"
    assert doc["node"]["locality"] == {"zone": "east"}
    assert doc["node"]["metadata"] == {"gossamer.io/zone-ingress": "east-ingress"}
    names = [c["name"] for c in doc["static_resources"]["clusters"]]
    assert SDS_CLUSTER not in names and "gossamer_xds" in names
    assert doc["admin"]["address"]["socket_address"]["port_value"] == 9902
    assert doc["dynamic_resources"]["ads_config"]["grpc_services"][0]["initial_metadata"] == [
        {"key": "authorization", "value": "Bearer a.b.c"}]


def test_the_default_name_comes_from_the_zone_token() -> None:
    import jwt

    assert zone_of(jwt.encode({"sub": "east", "kind": "zone"}, KEY, algorithm="HS256")) == "east"
    with pytest.raises(InputError, match="pass --name"):
        zone_of("a.b.c")


@pytest.mark.parametrize("flags, message", [
    (["--advertise", "0.0.0.0:10001"], "cannot dial a wildcard"),
    (["--listen", "10001"], "expected HOST:PORT"),
    (["--listen", "0.0.0.0:0"], "between 1 and 65535"),
    (["--name", "Bad_Name"], "Bad_Name"),
])
def test_bad_flags_are_usage_errors(tmp_path: Path, flags: list[str], message: str) -> None:
    token = tmp_path / "token"
    token.write_text("a.b.c")
    from gossamer.pki.serving import ensure_serving_tls

    ca = ensure_serving_tls(tmp_path / "tls", "zone", ["localhost"]).ca_file
    result = CliRunner().invoke(main, ["ingress", "run", "--cp", "https://localhost:5678",
                                       "--token-file", str(token), "--cp-ca", str(ca), *flags])
    assert result.exit_code == 2, result.output
    assert message in result.output

