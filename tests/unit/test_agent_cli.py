"""``gossamer proxy run``: every bad input is one clear message and exit 2, before anything
starts (no control plane is contacted in these tests)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cli.run_proxy import run
from gossamer.pki.certs import new_leaf, new_root_ca

DATAPLANE = """\
type: Dataplane
mesh: default
name: backend-1
networking:
  address: "{{ address }}"
  inbound:
  - port: 18080
    servicePort: 8080
    tags: {gossamer.io/service: backend}
"""


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    dp = tmp_path / "backend.yaml"
    dp.write_text(DATAPLANE)
    token = tmp_path / "backend.token"
    token.write_text("aaa.bbb.ccc\n")
    ca = tmp_path / "ca.pem"
    ca.write_bytes(new_root_ca("zone CA", dt.datetime.now(dt.UTC), dt.timedelta(days=1))
                   .cert_pem())
    return {"dataplane": dp, "token": token, "ca": ca, "dir": tmp_path}


def invoke(files: dict[str, Path], *extra: str, dataplane: Path | None = None,
           var: str | None = "address=10.0.0.7") -> Result:
    args = ["--dataplane", str(dataplane or files["dataplane"]), "--cp",
            "https://127.0.0.1:5678", "--token-file", str(files["token"]), "--cp-ca",
            str(files["ca"]), "--work-dir", str(files["dir"] / "work"), *extra]
    if var is not None:
        args += ["--dataplane-var", var]
    return CliRunner().invoke(run, args)


def one_error(result: Result, code: int = 2) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error: ")
    return result.stderr


def test_a_missing_variable_names_the_placeholder(files: dict[str, Path]) -> None:
    err = one_error(invoke(files, var=None))
    assert "{{ address }}" in err and "--dataplane-var address=VALUE" in err
    assert not (files["dir"] / "work").exists()


def test_a_bad_variable_value(files: dict[str, Path]) -> None:
    err = one_error(invoke(files, var="address=10.0.0.7 evil"))
    assert "only letters, digits" in err


def test_an_invalid_dataplane_lists_its_fields(files: dict[str, Path]) -> None:
    bad = files["dir"] / "bad.yaml"
    bad.write_text(DATAPLANE.replace("port: 18080", "port: 0").replace("8080\n", "8080\n"
                                                                      "    bogus: 1\n", 1))
    err = one_error(invoke(files, dataplane=bad))
    lines = err.strip().splitlines()
    assert lines[0] == f"error: {bad}: invalid Dataplane backend-1"
    assert any(line.startswith("  networking.inbound[0].port: ") for line in lines)
    assert any(line == "  networking.inbound[0].bogus: unknown field" for line in lines)


def test_a_missing_dataplane_file(files: dict[str, Path]) -> None:
    err = one_error(invoke(files, dataplane=files["dir"] / "nope.yaml"))
    assert "cannot read the Dataplane file" in err


@pytest.mark.parametrize("url", ["http://127.0.0.1:5678", "127.0.0.1:5678",
                                 "https://127.0.0.1:5678/path", "https://:5678"])
def test_a_bad_control_plane_address(files: dict[str, Path], url: str) -> None:
    result = CliRunner().invoke(run, [
        "--dataplane", str(files["dataplane"]), "--dataplane-var", "address=10.0.0.7",
        "--cp", url, "--token-file", str(files["token"]), "--cp-ca", str(files["ca"])])
    assert "expected https://HOST:PORT" in one_error(result)


def test_a_file_that_is_not_a_token(files: dict[str, Path]) -> None:
    files["token"].write_text("not a token")
    assert "does not hold a dataplane token" in one_error(invoke(files))


def test_a_missing_envoy_binary(files: dict[str, Path]) -> None:
    err = one_error(invoke(files, "--envoy-binary", str(files["dir"] / "no-envoy")))
    assert "does not exist or is not executable" in err


def test_a_ca_file_that_is_not_a_ca(files: dict[str, Path]) -> None:
    files["ca"].write_text("hello")
    result = invoke(files)
    assert result.exit_code == 2
    assert "is not a readable PEM CA bundle" in result.output


def test_metrics_tls_files_go_together_and_must_match(files: dict[str, Path]) -> None:
    now = dt.datetime.now(dt.UTC)
    ca = new_root_ca("metrics CA", now, dt.timedelta(days=1))
    one, two = (new_leaf(ca, "metrics", now, dt.timedelta(days=1)) for _ in range(2))
    cert, key = files["dir"] / "metrics.pem", files["dir"] / "metrics-key.pem"
    cert.write_bytes(one.cert_pem())
    key.write_bytes(two.key_pem())
    err = one_error(invoke(files, "--metrics-cert-file", str(cert)))
    assert "--metrics-cert-file and --metrics-key-file go together" in err
    err = one_error(invoke(files, "--metrics-cert-file", str(cert), "--metrics-key-file",
                           str(key)))
    assert "is not the private key of the certificate" in err
    key.write_text("not a key")
    err = one_error(invoke(files, "--metrics-cert-file", str(cert), "--metrics-key-file",
                           str(key)))
    assert err.startswith("error: --metrics-cert-file/--metrics-key-file: ")
