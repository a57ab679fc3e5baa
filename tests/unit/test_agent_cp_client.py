"""The agent's view of the zone CP: its address, and gRPC failures as the agent's errors."""

from __future__ import annotations

import grpc
import pytest

from proxy.agent.cp_client import ControlPlaneAddress, translate
from proxy.agent.errors import ControlPlaneRefused, ControlPlaneUnavailable, InputError
from proxy.agent.grpc_wire import RpcError


@pytest.mark.parametrize("url, host, port, target", [
    ("https://zone-cp:5678", "zone-cp", 5678, "zone-cp:5678"),
    ("https://zone-cp", "zone-cp", 5678, "zone-cp:5678"),
    ("HTTPS://127.0.0.1:15678/", "127.0.0.1", 15678, "127.0.0.1:15678"),
    ("grpcs://[::1]:5678", "::1", 5678, "[::1]:5678"),
])
def test_addresses(url: str, host: str, port: int, target: str) -> None:
    address = ControlPlaneAddress.parse(url)
    assert (address.host, address.port, address.target) == (host, port, target)
    assert str(address) == f"https://{target}"


@pytest.mark.parametrize("url", ["http://zone-cp:5678", "zone-cp:5678", "https://zone-cp:0",
                                 "https://zone-cp:99999", "https://u@zone-cp:5678",
                                 "https://zone-cp:5678/x", "https://zone-cp:5678?q", ""])
def test_bad_addresses(url: str) -> None:
    with pytest.raises(InputError, match="--cp"):
        ControlPlaneAddress.parse(url)


def rpc_error(code: grpc.StatusCode, details: str) -> RpcError:
    """A failed call as the agent's gRPC boundary (``proxy.agent.grpc_wire``) gives it."""
    return RpcError(code.name, details)


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAUTHENTICATED,
                                  grpc.StatusCode.PERMISSION_DENIED,
                                  grpc.StatusCode.ALREADY_EXISTS,
                                  grpc.StatusCode.INVALID_ARGUMENT])
def test_a_no_is_a_refusal_with_the_reason(code: grpc.StatusCode) -> None:
    error = translate(rpc_error(code, "the token has been revoked"), "the registration")
    assert isinstance(error, ControlPlaneRefused) and not error.retryable
    assert error.detail == (f"the control plane refused the registration: "
                            f"the token has been revoked ({code.name})")
    assert error.code == code.name


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL,
                                  grpc.StatusCode.DEADLINE_EXCEEDED,
                                  grpc.StatusCode.FAILED_PRECONDITION])
def test_a_not_now_is_retryable(code: grpc.StatusCode) -> None:
    error = translate(rpc_error(code, "connection refused"), "the registration")
    assert isinstance(error, ControlPlaneUnavailable) and error.retryable
    assert code.name in error.detail and "connection refused" in error.detail
