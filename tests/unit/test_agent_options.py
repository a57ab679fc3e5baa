"""The agent commands' shared options and run body (``cli.agent_options``,
``cli.agent_process``): each command's one options object becomes the agent's settings,
and ``ingress run`` reports a bad input like ``proxy run`` does (one line, exit 2),
before anything starts. No control plane is contacted."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path

import jwt
import pytest
from click.testing import CliRunner, Result

from cli import run_ingress, run_proxy
from cli.agent_options import AgentOptions
from gossamer.pki.certs import new_root_ca
from proxy.agent.cp_client import ControlPlaneAddress
from proxy.agent.settings import EnvoyAgentSettings

DATAPLANE = """\
type: Dataplane
mesh: default
name: backend-1
networking:
  address: 10.0.0.7
  inbound:
  - port: 18080
    servicePort: 8080
    tags: {gossamer.io/service: backend}
"""


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(new_root_ca("zone CA", dt.datetime.now(dt.UTC), dt.timedelta(days=1))
                   .cert_pem())
    dp = tmp_path / "backend.yaml"
    dp.write_text(DATAPLANE)
    dp_token = tmp_path / "backend.token"
    dp_token.write_text("aaa.bbb.ccc\n")
    zone_token = tmp_path / "zone.token"
    zone_token.write_text(jwt.encode({"sub": "east"}, "k" * 32, algorithm="HS256") + "\n")
    return {"ca": ca, "dataplane": dp, "dp_token": dp_token, "zone_token": zone_token,
            "dir": tmp_path}


def shared(files: dict[str, Path], token: Path) -> AgentOptions:
    return AgentOptions(
        cp=("https://zone-cp.example.com:5678",), token_file=token, cp_ca=files["ca"],
        work_dir=None, admin_port=None, envoy_binary="/bin/true", concurrency=2,
        envoy_log_level="debug", drain_time=1.5, log_level="info")


def test_proxy_options_become_the_sidecar_settings(files: dict[str, Path]) -> None:
    options = run_proxy.ProxyOptions(
        agent=shared(files, files["dp_token"]), dataplane=files["dataplane"],
        dataplane_vars=(), metrics_cert_file=None, metrics_key_file=None,
        dns_addr=("127.0.0.2", 5353))
    settings = run_proxy.build_settings(options)
    assert isinstance(settings, EnvoyAgentSettings)
    assert settings.cp == ControlPlaneAddress("zone-cp.example.com", 5678)
    assert settings.token == "aaa.bbb.ccc"
    assert settings.cp_ca_pem == files["ca"].read_bytes()
    assert settings.work_dir == Path(".gossamer/proxy-backend-1")
    assert settings.envoy_binary == Path("/bin/true")
    assert (settings.admin_port, settings.concurrency, settings.envoy_log_level,
            settings.drain_time) == (9901, 2, "debug", 1.5)
    assert settings.dataplane.name == "backend-1"
    assert (settings.dns.host, settings.dns.port) == ("127.0.0.2", 5353)
    assert settings.metrics_tls is None

    files["dataplane"].write_text(DATAPLANE.replace("  inbound:", "  admin: {port: 9911}\n"
                                                                  "  inbound:"))
    assert run_proxy.build_settings(options).admin_port == 9911
    explicit = replace(options, agent=replace(options.agent, admin_port=9920,
                                              work_dir=files["dir"] / "w"))
    settings = run_proxy.build_settings(explicit)
    assert (settings.admin_port, settings.work_dir) == (9920, files["dir"] / "w")


def test_ingress_options_become_the_ingress_settings(files: dict[str, Path]) -> None:
    options = run_ingress.IngressOptions(
        agent=replace(shared(files, files["zone_token"]), admin_port=9901), name=None,
        listen=("10.0.0.9", 10001), advertise=None)
    settings = run_ingress.build_settings(options)
    assert isinstance(settings, EnvoyAgentSettings)
    assert settings.name == "east-ingress"  # named by the zone token's subject
    assert settings.work_dir == Path(".gossamer/east-ingress")
    assert (settings.address, settings.port, settings.advertised) == ("10.0.0.9", 10001, None)
    assert settings.token == files["zone_token"].read_text().strip()
    assert settings.cp_ca_pem == files["ca"].read_bytes()
    assert (settings.admin_port, settings.concurrency, settings.envoy_log_level,
            settings.drain_time) == (9901, 2, "debug", 1.5)

    named = replace(options, name="edge", advertise=("203.0.113.7", 443))
    settings = run_ingress.build_settings(named)
    assert (settings.name, settings.advertised) == ("edge", ("203.0.113.7", 443))
    assert settings.work_dir == Path(".gossamer/edge")


def ingress(files: dict[str, Path], *extra: str) -> Result:
    return CliRunner().invoke(run_ingress.run, [
        "--cp", "https://127.0.0.1:5678", "--token-file", str(files["zone_token"]),
        "--cp-ca", str(files["ca"]), "--listen", "127.0.0.1:10001",
        "--work-dir", str(files["dir"] / "work"), *extra])


def one_error(result: Result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.stderr.startswith("error: ")
    return result.stderr


def test_ingress_run_reports_a_missing_envoy_binary(files: dict[str, Path]) -> None:
    err = one_error(ingress(files, "--envoy-binary", str(files["dir"] / "no-envoy")))
    assert "does not exist or is not executable" in err
    assert not (files["dir"] / "work").exists()


def test_ingress_run_reports_a_bad_control_plane_address(files: dict[str, Path]) -> None:
    result = CliRunner().invoke(run_ingress.run, [
        "--cp", "http://127.0.0.1:5678", "--token-file", str(files["zone_token"]),
        "--cp-ca", str(files["ca"])])
    assert "expected https://HOST:PORT" in one_error(result)


def test_a_token_without_a_zone_asks_for_a_name(files: dict[str, Path]) -> None:
    files["zone_token"].write_text("aaa.bbb.ccc\n")
    assert "the token names no zone: pass --name" in one_error(ingress(files))
