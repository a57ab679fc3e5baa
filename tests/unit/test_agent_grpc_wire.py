"""The agent's gRPC boundary (``proxy.agent.grpc_wire``): what each failure of a call
becomes. The calls themselves run against real grpcio servers in the integration tests
(``test_agent_identity``, ``test_agent_sds``, ``test_first_run_tls``)."""

from __future__ import annotations

import ssl
from types import SimpleNamespace
from typing import Any

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError, StreamTerminatedError

from gossamer.pki.dial_errors import VerifyFailure, verify_failure
from proxy.agent.grpc_wire import (
    MAX_MESSAGE,
    BoundedCodec,
    RpcError,
    boundary,
    rpc_error,
    status_sent,
)
from sync.v1 import agent_pb2


@pytest.mark.parametrize(("exc", "code"), [
    (GRPCError(Status.UNAUTHENTICATED, "the token has expired"), "UNAUTHENTICATED"),
    (TimeoutError(), "DEADLINE_EXCEEDED"),
    (ConnectionRefusedError(111, "Connection refused"), "UNAVAILABLE"),
    (StreamTerminatedError("Connection lost"), "UNAVAILABLE"),
])
def test_each_failure_of_a_call_has_a_status(exc: BaseException, code: str) -> None:
    failure = rpc_error(exc)
    assert failure is not None and failure.code == code


def test_a_bug_is_not_a_failure_of_the_call() -> None:
    assert rpc_error(ValueError("a bug")) is None
    with pytest.raises(ValueError), boundary():
        raise ValueError("a bug")


def test_a_certificate_that_did_not_verify_says_why() -> None:
    exc = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate "
                                          "verify failed: Hostname mismatch, certificate "
                                          "is not valid for 'cp.example'.")
    failure = rpc_error(exc)
    assert failure is not None and failure.code == "UNAVAILABLE"
    assert verify_failure(failure.details) is VerifyFailure.HOSTNAME


def stream(headers: Any = None, trailers: Any = None) -> Any:
    return SimpleNamespace(_stream=SimpleNamespace(headers=headers, trailers=trailers))


def test_the_status_sent_before_a_reset_is_the_answer() -> None:
    refused = stream(headers=[(":status", "200"), ("grpc-status", "16"),
                              ("grpc-message", "the%20token%20has%20expired")])
    with pytest.raises(RpcError) as caught, boundary(refused):
        raise StreamTerminatedError("Stream reset by remote party, error_code: 0")
    assert (caught.value.code, caught.value.details) == ("UNAUTHENTICATED",
                                                         "the token has expired")
    assert status_sent(stream(headers=[("grpc-status", "0")])) is None
    assert status_sent(stream()) is None
    odd = status_sent(stream(trailers=[("grpc-status", "99")]))
    assert odd is not None and odd.code == "UNKNOWN"


def test_a_message_over_the_bound_is_refused() -> None:
    codec = BoundedCodec()
    table = agent_pb2.DnsTable(version="v1")
    assert codec.decode(table.SerializeToString(), agent_pb2.DnsTable) == table
    with pytest.raises(GRPCError) as caught:
        codec.decode(b"\0" * (MAX_MESSAGE + 1), agent_pb2.DnsTable)
    assert caught.value.status is Status.RESOURCE_EXHAUSTED
