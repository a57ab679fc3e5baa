"""The pure parts of the API's hardening: sizes, what counts as loopback, when TLS is on,
the names the certificate carries, the completed OpenAPI document and the run flags."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import main
from gossamer.api.openapi import complete
from gossamer.api.serve import certificate_hosts
from gossamer.settings import ApiSettings, is_loopback, parse_byte_size


@pytest.mark.parametrize(("text", "size"), [
    ("8MiB", 8 << 20), ("8M", 8 << 20), ("8mb", 8 << 20), ("512KiB", 512 << 10),
    ("1048576", 1 << 20), (" 1 GiB ", 1 << 30), ("10b", 10)])
def test_sizes_are_binary_whatever_the_spelling(text: str, size: int) -> None:
    assert parse_byte_size(text) == size


@pytest.mark.parametrize("text", ["", "8 TiB", "-1", "1.5MiB", "MiB", "8MiBs"])
def test_a_bad_size_is_named(text: str) -> None:
    with pytest.raises(ValueError, match="expected a size like 8MiB"):
        parse_byte_size(text)


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.0.0.2", True), ("127.255.255.254", True), ("::1", True),
    ("localhost", True), ("LOCALHOST", True), ("0.0.0.0", False), ("::", False),
    ("192.0.2.2", False), ("fd00::2", False), ("cp.example.com", False)])
def test_loopback_is_127_8_and_ipv6_one_and_localhost(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_tls_is_on_beyond_loopback_or_when_asked() -> None:
    assert not ApiSettings().serves_tls("127.0.0.1:5681")
    assert not ApiSettings().serves_tls("[::1]:5681")
    assert ApiSettings().serves_tls("0.0.0.0:5681")
    assert ApiSettings().serves_tls("192.0.2.2:5681")
    assert ApiSettings(tls=True).serves_tls("127.0.0.1:5681")
    provided = ApiSettings(tls_cert=Path("c.pem"), tls_key=Path("k.pem"))
    assert provided.serves_tls("127.0.0.1:5681")


def test_api_settings_refuse_half_a_pair_and_absurd_limits() -> None:
    with pytest.raises(ValueError, match="go together"):
        ApiSettings(tls_cert=Path("c.pem"))
    with pytest.raises(ValueError, match="between 1KiB and 1GiB"):
        ApiSettings(max_body=10)


def test_the_certificate_names_the_api_host_unless_wildcard_or_loopback() -> None:
    assert certificate_hosts(("cp.example.com",), "192.0.2.2:5681") == [
        "cp.example.com", "192.0.2.2"]
    assert certificate_hosts(("cp.example.com",), "0.0.0.0:5681") == ["cp.example.com"]
    assert certificate_hosts((), "127.0.0.1:5681") == []
    assert certificate_hosts(("192.0.2.2",), "192.0.2.2:5681") == ["192.0.2.2"]


def test_openapi_is_completed_with_errors_security_and_path_parameters() -> None:
    ok = {"200": {"description": "ok"}, "422": {"description": "validation"}}
    schema = {"paths": {
        "/meshes/{mesh}/things/{name}": {"put": {
            "parameters": [{"name": "name", "in": "path", "required": True}],
            "responses": dict(ok)}},
        "/healthz": {"get": {"responses": {"200": {"description": "ok"}}}}},
        "components": {"schemas": {"HTTPValidationError": {}, "ValidationError": {}}}}
    out = complete(schema)
    put = out["paths"]["/meshes/{mesh}/things/{name}"]["put"]
    assert [p["name"] for p in put["parameters"]] == ["mesh", "name"]
    assert "422" not in put["responses"]
    assert {"200", "201", "400", "401", "404", "409", "413", "503"} <= set(put["responses"])
    health = out["paths"]["/healthz"]["get"]
    assert health["security"] == [] and "401" not in health["responses"]
    assert out["security"] == [{"adminToken": []}]
    assert set(out["components"]["schemas"]) == {"Problem"}


@pytest.mark.parametrize(("args", "message"), [
    (["--api-max-body", "lots"], "expected a size like 8MiB"),
    (["--api-max-body", "10"], "between 1KiB and 1GiB"),
    (["--api-tls-cert", "/nonexistent/cert.pem"], "cannot read /nonexistent/cert.pem"),
])
def test_run_flags_are_checked_before_anything_starts(tmp_path: Path, args: list[str],
                                                      message: str) -> None:
    for command in (["global", "run"], ["zone", "run", "--zone", "lab"]):
        result = CliRunner().invoke(main, [*command, "--data-dir", str(tmp_path), *args])
        assert result.exit_code == 2, result.output
        assert message in result.output


def test_a_certificate_without_its_key_is_a_usage_error(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    result = CliRunner().invoke(main, ["global", "run", "--data-dir", str(tmp_path),
                                       "--api-tls-cert", str(cert)])
    assert result.exit_code == 2 and "go together" in result.output, result.output
