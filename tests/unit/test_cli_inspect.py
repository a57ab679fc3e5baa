"""``gossamer inspect certificates`` and the certificate columns of ``inspect dataplanes``,
against canned API answers (``HandlerTransport``): the zone/global switch, the rows,
and the YAML/JSON shapes. The real control planes are in
``tests/integration/test_cert_insights.py``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from click.testing import CliRunner, Result

from cli.inspect import expires_in
from cli.main import main
from cli.state import Runtime
from tests.unit.cli_fake_cp import HandlerTransport

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
CERT = {"serial": "1f2e3d", "issuer": "CN=Gossamer zone lab mesh default,O=Gossamer",
        "notBefore": "2030-01-01T06:55:00+00:00", "notAfter": "2030-01-02T07:00:00+00:00",
        "expiresInSeconds": 68400, "uris": ["spiffe://default/backend"],
        "trustBundleDigest": "ab" * 32, "reportedAt": "2030-01-01T07:00:01+00:00",
        "health": "valid"}
DATAPLANES = {"items": [
    {"mesh": "default", "name": "backend-1", "dataplane": {}, "online": True,
     "certificate": CERT, "xds": {"acked": 3, "nacked": 0, "lastNack": None}},
    {"mesh": "default", "name": "web-1", "dataplane": {}, "online": True,
     "certificate": None, "xds": None},
], "total": 2, "next": None}
ZONE_CERTS = {"items": [
    {"name": "east.default", "zone": "east", "mesh": "default", "signer": "ca-1/0",
     "serial": "aa11", "issuer": "CN=default root,O=Gossamer",
     "notBefore": "2030-01-01T00:00:00+00:00", "notAfter": "2030-01-01T11:00:00+00:00",
     "expiresInSeconds": -3600, "error": None},
    {"name": "west.default", "zone": "west", "mesh": "default", "signer": "vault-1/0",
     "serial": "bb22", "issuer": "CN=vault root", "notBefore": "2030-01-01T00:00:00+00:00",
     "notAfter": "2030-01-03T12:00:00+00:00", "expiresInSeconds": 172800, "error": None},
], "total": 2, "next": None}


def invoke(tmp_path: Path, mode: str, *args: str) -> tuple[Result, list[str]]:
    asked: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        assert request.headers["authorization"] == "Bearer admin-token"
        body: Any = {"/": {"mode": mode}, "/dataplanes/_overviews": DATAPLANES,
                     "/certificates/_overviews": ZONE_CERTS}.get(request.url.path)
        return httpx.Response(200 if body is not None else 404, json=body or {})

    token = tmp_path / "token"
    token.write_text("admin-token")
    runtime = Runtime(transport=HandlerTransport(answer), clock=lambda: NOW,
                      env={"GOSSAMER_CONFIG": str(tmp_path / "none.yaml"),
                           "GOSSAMER_ADDRESS": "http://cp.test:5681",
                           "GOSSAMER_TOKEN_FILE": str(token)})
    result = CliRunner().invoke(main, ["inspect", *args], obj=runtime)
    assert result.exit_code == 0, result.output
    return result, asked


def rows(output: str) -> list[list[str]]:
    return [line.split() for line in output.splitlines()]


def test_at_a_zone_each_dataplanes_certificate(tmp_path: Path) -> None:
    result, asked = invoke(tmp_path, "zone", "certificates")
    assert asked == ["/", "/dataplanes/_overviews"]
    assert rows(result.output) == [
        ["MESH", "DATAPLANE", "SERIAL", "ISSUER", "NOT-AFTER", "EXPIRES-IN"],
        ["default", "backend-1", "1f2e3d", "CN=Gossamer", "zone", "lab", "mesh",
         "default,O=Gossamer", "2030-01-02T07:00:00+00:00", "19h"],
        ["default", "web-1", "-", "-", "-", "-"]]


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_at_a_zone_as_yaml_and_json(tmp_path: Path, fmt: str) -> None:
    result, _ = invoke(tmp_path, "standalone", "certificates", "-o", fmt)
    doc = json.loads(result.output) if fmt == "json" else yaml.safe_load(result.output)
    first, second = doc["items"]
    assert first["dataplane"] == "backend-1" and first["serial"] == "1f2e3d"
    assert first["trustBundleDigest"] == "ab" * 32 and first["uris"] == CERT["uris"]
    assert second == {"mesh": "default", "dataplane": "web-1", "serial": None,
                      "issuer": None, "notBefore": None, "notAfter": None,
                      "expiresInSeconds": None, "uris": None, "trustBundleDigest": None,
                      "health": None}


def test_at_the_global_each_zones_intermediate(tmp_path: Path) -> None:
    result, asked = invoke(tmp_path, "global", "certificates")
    assert asked == ["/", "/certificates/_overviews"]
    table = rows(result.output)
    assert table[0] == ["ZONE", "MESH", "SERIAL", "ISSUER", "NOT-AFTER", "EXPIRES-IN",
                        "SIGNER"]
    assert table[1] == ["east", "default", "aa11", "CN=default", "root,O=Gossamer",
                        "2030-01-01T11:00:00+00:00", "expired", "ca-1/0"]
    assert table[2][-2:] == ["2d", "vault-1/0"]
    result, _ = invoke(tmp_path, "global", "certificates", "-o", "json")
    assert json.loads(result.output) == {"items": ZONE_CERTS["items"]}


def test_dataplanes_show_the_serial_and_expiry(tmp_path: Path) -> None:
    result, _ = invoke(tmp_path, "zone", "dataplanes")
    table = rows(result.output)
    assert table[0][3:6] == ["CERT-SERIAL", "CERT-NOT-AFTER", "EXPIRES-IN"]
    assert table[1][:6] == ["default", "backend-1", "Online", "1f2e3d",
                            "2030-01-02T07:00:00+00:00", "19h"]
    assert table[2][:6] == ["default", "web-1", "Online", "-", "-", "-"]


def test_expires_in() -> None:
    assert expires_in("2030-01-01T12:00:42+00:00", NOW) == "42s"
    assert expires_in("2030-01-01T11:59:59+00:00", NOW) == "expired"
    assert expires_in(None, NOW) == "-" and expires_in("soon", NOW) == "-"
