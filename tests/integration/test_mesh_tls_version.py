"""Mesh mTLS is TLS 1.3 only, with real Envoy sidecars (``tests.dataplane_env``).

Under TLS 1.2 the server's and the client's certificates cross the network in clear, and
cross-zone traffic crosses the WAN through ingresses that only pass TLS through; so the
generated contexts pin mesh mTLS to TLS 1.3 (``proxy.envoy.tls``). Here a zone CP
in-process runs ``web-1`` calling ``backend-1``; the tests check that:

- sidecar-to-sidecar traffic works and both Envoys report it as TLS 1.3;
- backend-1's inbound refuses a client capped at TLS 1.2 even with a valid mesh
  certificate, while the same client at TLS 1.3 completes the handshake (the server
  presenting backend's SPIFFE identity) and gets an HTTP answer through the listener.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from gossamer.pki.certs import new_csr, new_key, uri_sans
from tests.dataplane_apps import HttpApp, listen_port, requests
from tests.dataplane_env import DataplaneEnv, Member, Sidecar
from zone_cp.ca import workload_uris

pytestmark = pytest.mark.asyncio(loop_scope="module")

MESH = "default"
VERSIONS = r"\.ssl\.versions\."


def inbound_errors(sidecar: Sidecar) -> str:
    """The counter of failed TLS handshakes on ``sidecar``'s inbound listener."""
    return f"listener.inbound_127_0_0_1_{sidecar.inbound_port}.ssl.connection_error"


@dataclass(frozen=True)
class ClientIdentity:
    """A mesh workload certificate (web's) and the mesh's trust bundle, as files."""

    chain: Path
    key: Path
    trust: Path


@dataclass
class Lab:
    env: DataplaneEnv
    web: Sidecar
    backend: Sidecar
    outbound: int  # web's outbound port for backend
    client: ClientIdentity


async def web_identity(env: DataplaneEnv, web: Member, directory: Path) -> ClientIdentity:
    """A certificate the zone's CA signs for web's Dataplane, as its agent would get."""
    key = new_key()
    signed = await env.cp.ca.sign(MESH, workload_uris(MESH, web.service, web.tags),
                                  new_csr(key, web.name))
    identity = ClientIdentity(directory / "web.pem", directory / "web-key.pem",
                              directory / "trust.pem")
    identity.chain.write_bytes(signed.chain_pem)
    identity.key.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8,
                                               NoEncryption()))
    identity.trust.write_bytes(signed.trust_bundle_pem)
    return identity


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def lab(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Lab]:
    directory = tmp_path_factory.mktemp("mesh-tls")
    apps = {name: HttpApp(name).start() for name in ("web-1", "backend-1")}
    outbound = listen_port()
    web = Member("web-1", "web", apps["web-1"].port, outbounds={"backend": outbound})
    try:
        async with DataplaneEnv(directory) as env:
            web_car, backend_car = await env.start(
                web, Member("backend-1", "backend", apps["backend-1"].port))
            client = await web_identity(env, web, directory)
            yield Lab(env, web_car, backend_car, outbound, client)
    finally:
        for app in apps.values():
            app.stop()


def client_context(identity: ClientIdentity, version: ssl.TLSVersion) -> ssl.SSLContext:
    """A client of the mesh with web's certificate, speaking at most ``version``."""
    context = ssl.create_default_context(cafile=str(identity.trust))
    context.check_hostname = False  # workload certificates carry SPIFFE URIs, no host names
    context.load_cert_chain(identity.chain, identity.key)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = version
    return context


@dataclass(frozen=True)
class Handshake:
    version: str | None
    server_uris: list[str]
    reply: bytes


def connect(port: int, context: ssl.SSLContext) -> Handshake:
    """Handshake with the listener at ``port``, then one HTTP/1.1 request."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            context.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        version = tls.version()
        tls.sendall(b"GET / HTTP/1.1\r\nHost: backend\r\nConnection: close\r\n\r\n")
        reply = tls.recv(4096)
    return Handshake(version, uri_sans(x509.load_der_x509_certificate(der)), reply)


async def test_sidecar_to_sidecar_traffic_is_tls13(lab: Lab) -> None:
    replies = await requests(lab.outbound, count=3)
    assert [r.status for r in replies] == [200, 200, 200]
    assert {r.instance for r in replies} == {"backend-1"}
    # Envoy counts each handshake under the version it negotiated.
    sent = await lab.web.stats(r"^cluster\.backend" + VERSIONS)
    received = await lab.backend.stats(r"^listener\..*" + VERSIONS)
    for seen in (sent, received):
        by_version = {k.rsplit(".versions.", 1)[1]: v for k, v in seen.items() if v}
        assert set(by_version) == {"TLSv1.3"}, seen


async def test_inbound_refuses_tls12_and_accepts_tls13(lab: Lab) -> None:
    port = lab.backend.inbound_port
    refused = await lab.backend.stat(inbound_errors(lab.backend))

    # The same certificate and trust at TLS 1.2: Envoy answers with a protocol_version
    # alert before anything else is exchanged.
    with pytest.raises(ssl.SSLError, match=r"(?i)protocol.version|unsupported.protocol"):
        await asyncio.to_thread(connect, port, client_context(lab.client,
                                                              ssl.TLSVersion.TLSv1_2))

    done = await asyncio.to_thread(connect, port, client_context(lab.client,
                                                                 ssl.TLSVersion.TLSv1_3))
    assert done.version == "TLSv1.3"
    assert f"spiffe://{MESH}/backend" in done.server_uris
    # The client certificate was accepted too (under TLS 1.3 the server checks it after
    # the client's side of the handshake is done): the listener answered over HTTP.
    assert done.reply.startswith(b"HTTP/1.1 "), done.reply
    assert await lab.backend.stat(inbound_errors(lab.backend)) == refused + 1
