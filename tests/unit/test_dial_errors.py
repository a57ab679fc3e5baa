"""A control plane's certificate that did not verify, told as the address dialled and the
flag that fixes it (``gossamer.pki.dial_errors``), at the agent's boundary
(``proxy.agent.cp_client.translate``). The details are gRPC's own, as seen on this
machine (``tests/integration/test_first_run_tls.py`` shows them through real servers)."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from gossamer.pki.dial_errors import VerifyFailure, explain, verify_failure
from proxy.agent.cp_client import ControlPlaneAddress, translate
from proxy.agent.errors import ControlPlaneNotVerified, ControlPlaneUnavailable
from proxy.agent.grpc_wire import RpcError

HOSTNAME = ("failed to connect to all addresses; last error: UNKNOWN: ipv4:192.0.2.2:5678: "
            "Custom verification check failed with error: UNAUTHENTICATED: Hostname "
            "Verification Check failed.")
UNTRUSTED = ("failed to connect to all addresses; last error: UNKNOWN: ipv4:192.0.2.2:5678: "
             "Tls handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:1000007d:SSL "
             "routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED: unable to get local "
             "issuer certificate: OK")
REFUSED = ("failed to connect to all addresses; last error: UNKNOWN: ipv4:192.0.2.2:5678: "
           "Failed to connect to remote host: Connection refused")


def rpc_error(code: grpc.StatusCode, details: str) -> RpcError:
    """A failed call as the agent's gRPC boundary (``proxy.agent.grpc_wire``) gives it."""
    return RpcError(code.name, details)


@pytest.mark.parametrize("details, failure", [
    (HOSTNAME, VerifyFailure.HOSTNAME), (UNTRUSTED, VerifyFailure.UNTRUSTED),
    ("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: IP address mismatch",
     VerifyFailure.HOSTNAME),
    ("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: Hostname mismatch, "
     "certificate is not valid for 'cp.example'. (_ssl.c:1006)", VerifyFailure.HOSTNAME),
    (REFUSED, None), ("", None)])
def test_the_failure_is_read_from_the_details(details: str,
                                              failure: VerifyFailure | None) -> None:
    assert verify_failure(details) is failure


def test_the_sentences_name_the_address_and_the_flag() -> None:
    assert explain(VerifyFailure.HOSTNAME, "192.0.2.2:5678", "192.0.2.2", "--cp-ca",
                   "/ca.pem") == (
        "the certificate of 192.0.2.2:5678 does not name 192.0.2.2: start that control "
        "plane with --tls-host 192.0.2.2 (or call it by a name its certificate has)")
    assert explain(VerifyFailure.UNTRUSTED, "cp:5685", "cp", "--global-ca", "/g/ca.pem") == (
        "the certificate of cp:5685 does not verify with --global-ca /g/ca.pem: give the "
        "CA of that control plane (<its data-dir>/tls/ca.pem)")


def test_the_agent_says_which_flag_fixes_a_certificate_that_did_not_verify() -> None:
    cp = ControlPlaneAddress.parse("https://192.0.2.2:5678")
    error = translate(rpc_error(grpc.StatusCode.UNAVAILABLE, HOSTNAME), "the registration",
                      cp, Path("/etc/gossamer/ca.pem"))
    assert isinstance(error, ControlPlaneNotVerified) and error.retryable
    assert error.caller_fault
    assert "192.0.2.2:5678 does not name 192.0.2.2" in error.detail
    assert "--tls-host 192.0.2.2" in error.detail
    error = translate(rpc_error(grpc.StatusCode.UNAVAILABLE, UNTRUSTED), "the registration",
                      cp, Path("/etc/gossamer/ca.pem"))
    assert isinstance(error, ControlPlaneNotVerified)
    assert "does not verify with --cp-ca /etc/gossamer/ca.pem" in error.detail
    # Any other unreachable control plane stays what it was.
    error = translate(rpc_error(grpc.StatusCode.UNAVAILABLE, REFUSED), "the registration", cp)
    assert type(error) is ControlPlaneUnavailable and "Connection refused" in error.detail
