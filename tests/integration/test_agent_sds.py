"""The agent's SDS against a real Envoy (both dialects): serving certificates, and rotation
without a restart; and to a plain gRPC client, every change pushed.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.service.discovery.v3 import discovery_pb2
from envoy.service.secret.v3 import sds_pb2_grpc

from proxy.agent.sds_server import SecretServer
from proxy.agent.sds_state import SECRET_TYPE, secret_entries
from proxy.context import IDENTITY_SECRET
from tests.integration.agent_env import (
    Pki,
    der,
    envoy_command,
    free_port,
    handshake,
    supervised,
    tls_listener_bootstrap,
)
from tests.waiting import eventually


@pytest.mark.parametrize("api_type", ["GRPC", "DELTA_GRPC"])
async def test_sds_serves_envoy_and_rotation_needs_no_restart(
        tmp_path: Path, sds: SecretServer, api_type: str) -> None:
    assert sds.path is not None and sds.path.stat().st_mode & 0o077 == 0
    mesh = Pki()
    first = mesh.workload()
    sds.update(secret_entries(first.cert_pem(), first.key_pem(), mesh.ca.cert_pem()))
    admin, port = free_port(), free_port()
    command = envoy_command(tmp_path / "envoy",
                            tls_listener_bootstrap(admin, port, sds.path, api_type))
    client = mesh.workload()
    async with supervised(command, admin) as (envoy, _):
        served = await eventually(lambda: asyncio.to_thread(
            handshake, port, mesh.ca.cert_pem(), client, tmp_path), timeout=20,
            what="Envoy serving the certificate from SDS")
        assert served == der(first)
        pid = envoy.pid

        second = mesh.workload()
        sds.update(secret_entries(second.cert_pem(), second.key_pem(), mesh.ca.cert_pem()))

        async def serves_second() -> bool:
            return await asyncio.to_thread(
                handshake, port, mesh.ca.cert_pem(), client, tmp_path) == der(second)

        await eventually(serves_second, timeout=10, what="the rotated certificate")
        assert envoy.pid == pid and envoy.starts == 1

        # A new trust bundle: clients of the old CA are refused, the new CA's admitted.
        other = Pki()
        sds.update(secret_entries(second.cert_pem(), second.key_pem(), other.ca.cert_pem()))
        newcomer = other.workload()
        await eventually(lambda: asyncio.to_thread(
            handshake, port, mesh.ca.cert_pem(), newcomer, tmp_path), timeout=10,
            what="a client of the new trust bundle admitted")
        with pytest.raises((ssl.SSLError, ConnectionError, AssertionError)):
            await asyncio.to_thread(handshake, port, mesh.ca.cert_pem(), client, tmp_path)
        assert envoy.pid == pid
        assert sds.last_nack is None


async def test_sds_to_a_grpc_client_pushes_every_change(sds: SecretServer) -> None:
    """The state-of-the-world stream as any SDS client sees it: answer, ACK, push."""
    mesh = Pki()
    first = mesh.workload()
    sds.update(secret_entries(first.cert_pem(), first.key_pem(), mesh.ca.cert_pem()))
    assert sds.path is not None
    async with grpc.aio.insecure_channel(f"unix:{sds.path}") as channel:
        stub = sds_pb2_grpc.SecretDiscoveryServiceStub(channel)
        call = stub.StreamSecrets()
        node = base_pb2.Node(id="test")
        await call.write(discovery_pb2.DiscoveryRequest(
            node=node, type_url=SECRET_TYPE, resource_names=[IDENTITY_SECRET]))
        response = await asyncio.wait_for(call.read(), 5)
        secret = secret_pb2.Secret()
        response.resources[0].Unpack(secret)
        assert secret.tls_certificate.certificate_chain.inline_bytes == first.cert_pem()
        await call.write(discovery_pb2.DiscoveryRequest(
            node=node, type_url=SECRET_TYPE, resource_names=[IDENTITY_SECRET],
            version_info=response.version_info, response_nonce=response.nonce))
        second = mesh.workload()
        sds.update(secret_entries(second.cert_pem(), second.key_pem(), mesh.ca.cert_pem()))
        pushed = await asyncio.wait_for(call.read(), 5)
        pushed.resources[0].Unpack(secret)
        assert secret.tls_certificate.private_key.inline_bytes == second.key_pem()
        assert pushed.version_info != response.version_info
        call.cancel()

