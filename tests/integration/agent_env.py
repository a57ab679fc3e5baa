"""The agent's real parts against a real Envoy: what the agent tests (and the zone, ingress,
VIP and dataplane-environment tests) share.

``FakeZoneCp`` speaks the agent API (the contract of ``agent.proto``, so the agent tests do
not depend on the zone CP's internals); ``agent_process`` runs the real agent process
(``AgentProcess``) against a control plane; ``envoy_pids`` finds its Envoys; the rest
build SDS and bootstrap material for Envoy and check what it serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from gossamer.pki.certs import KeyPair, new_leaf, new_root_ca, sign_leaf
from gossamer.pki.serving import ensure_serving_tls
from proxy.agent import bootstrap as boot
from proxy.agent.envoy_process import EnvoyCommand, EnvoySupervisor, SupervisionPolicy
from proxy.context import IDENTITY_SECRET, SDS_CLUSTER, TRUST_SECRET
from proxy.envoy_binary import envoy_binary
from sync.v1 import agent_pb2, agent_pb2_grpc

ENVOY = envoy_binary()


NOW = dt.datetime.now(dt.UTC)


_HCM = ("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
        "HttpConnectionManager")


_ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"


_DOWNSTREAM_TLS = ("type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
                   "DownstreamTlsContext")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sds_config(name: str, api_type: str) -> dict[str, Any]:
    return {"name": name, "sds_config": {"resource_api_version": "V3", "api_config_source": {
        "api_type": api_type, "transport_api_version": "V3",
        "grpc_services": [{"envoy_grpc": {"cluster_name": SDS_CLUSTER}}]}}}


def tls_listener_bootstrap(admin_port: int, port: int, sock: Path, api_type: str
                           ) -> dict[str, Any]:
    """A static listener whose certificate and client CA come from SDS; nothing else."""
    params = boot.BootstrapParams(
        node_id="default.backend-1", mesh="default", dataplane="backend-1", zone="lab",
        service="backend", cp_host="127.0.0.1", cp_port=1, cp_ca_pem="", token="a.b.c",
        sds_socket=str(sock), admin_port=admin_port)
    tls = {"@type": _DOWNSTREAM_TLS, "require_client_certificate": True,
           "common_tls_context": {
               "tls_certificate_sds_secret_configs": [sds_config(IDENTITY_SECRET, api_type)],
               "validation_context_sds_secret_config": sds_config(TRUST_SECRET, api_type)}}
    hcm = {"@type": _HCM, "stat_prefix": "inbound",
           "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [{
               "match": {"prefix": "/"},
               "direct_response": {"status": 200, "body": {"inline_string": "ok"}}}]}]},
           "http_filters": [{"name": "envoy.filters.http.router",
                             "typed_config": {"@type": _ROUTER}}]}
    return {
        "node": {"id": "default.backend-1", "cluster": "backend"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1",
                                                 "port_value": admin_port}}},
        "static_resources": {
            "clusters": [boot.sds_cluster(params)],
            "listeners": [{
                "name": "inbound", "address": {"socket_address": {
                    "address": "127.0.0.1", "port_value": port}},
                "filter_chains": [{
                    "transport_socket": {"name": "envoy.transport_sockets.tls",
                                         "typed_config": tls},
                    "filters": [{"name": "envoy.filters.network.http_connection_manager",
                                 "typed_config": hcm}]}]}]},
    }


@dataclass
class Pki:
    """A mesh CA and what the test needs from it."""

    ca: KeyPair = field(default_factory=lambda: new_root_ca("mesh", NOW, dt.timedelta(days=1)))

    def workload(self) -> KeyPair:
        return new_leaf(self.ca, "backend-1", NOW, dt.timedelta(hours=1),
                        uris=["spiffe://default/backend"])


def handshake(port: int, server_ca: bytes, client: KeyPair, directory: Path) -> bytes:
    """TLS to Envoy with a client certificate; the DER of the certificate Envoy served."""
    cert, key = directory / "client.pem", directory / "client-key.pem"
    cert.write_bytes(client.cert_pem())
    key.write_bytes(client.key_pem())
    context = ssl.create_default_context(cadata=server_ca.decode())
    context.check_hostname = False  # workload certificates carry SPIFFE URIs, no host names
    context.load_cert_chain(cert, key)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            context.wrap_socket(raw) as tls:
        tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply = tls.recv(4096)
        assert reply.startswith(b"HTTP/1.1 200"), reply
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        return der


def der(pair: KeyPair) -> bytes:
    return pair.cert.public_bytes(Encoding.DER)


@contextlib.asynccontextmanager
async def supervised(command: EnvoyCommand, admin_port: int,
                     policy: SupervisionPolicy | None = None
                     ) -> AsyncIterator[tuple[EnvoySupervisor, asyncio.Task[None]]]:
    supervisor = EnvoySupervisor(command, admin_port, policy or SupervisionPolicy())
    task = asyncio.create_task(supervisor.run())
    try:
        yield supervisor, task
    finally:
        await supervisor.stop(drain=False)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def envoy_command(work: Path, bootstrap: dict[str, Any], **kwargs: Any) -> EnvoyCommand:
    work.mkdir(parents=True, exist_ok=True)
    boot.write(work / "envoy.yaml", bootstrap)
    return EnvoyCommand(binary=ENVOY, bootstrap=work / "envoy.yaml", work_dir=work,
                        log_level="warning", **kwargs)


TOKEN = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJiYWNrZW5kIn0.c2lnbmF0dXJl"


DATAPLANE = """\
type: Dataplane
mesh: default
name: backend-1
networking:
  address: "{{ address }}"
  inbound:
  - port: 18080
    servicePort: 8080
    tags: {gossamer.io/service: backend, gossamer.io/protocol: http}
"""


class FakeZoneCp(agent_pb2_grpc.AgentServicer):
    """The zone CP's side of ``agent.proto`` and nothing more: token check, registration,
    CSR signing with a mesh CA, trust bundle pushes, heartbeats. No ADS: the agent's Envoy
    retries its ADS stream, which is all it does without a real zone CP."""

    def __init__(self, directory: Path, lifetime: dt.timedelta = dt.timedelta(hours=1)
                 ) -> None:
        self.tls = ensure_serving_tls(directory, "fake-zone", [])
        self.mesh = Pki()
        self.lifetime = lifetime
        self.registrations: list[dict[str, Any]] = []
        self.signed: list[x509.Certificate] = []
        # (registration number, status) for every AgentStatus the agent sent
        self.statuses: list[tuple[int, agent_pb2.AgentStatus]] = []
        self.live: set[asyncio.Queue[agent_pb2.ControlPlaneMessage]] = set()
        self.port = 0
        self._server: Any = None

    async def start(self, port: int = 0) -> None:
        server = grpc.aio.server()
        agent_pb2_grpc.add_AgentServicer_to_server(self, server)
        _, cert, key = self.tls.read()
        self.port = server.add_secure_port(f"127.0.0.1:{port}",
                                           grpc.ssl_server_credentials([(key, cert)]))
        await server.start()
        self._server = server

    async def stop(self) -> None:
        await self._server.stop(grace=0)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def push_trust_bundle(self, pem: bytes) -> None:
        self.push(agent_pb2.ControlPlaneMessage(trust_bundle=agent_pb2.TrustBundle(pem=pem)))

    def push(self, message: agent_pb2.ControlPlaneMessage) -> None:
        for queue in self.live:
            queue.put_nowait(message)

    def reported_chains(self, since: int = 1) -> list[bytes]:
        """The certificate chains reported from registration number ``since`` on."""
        return [st.certificate_chain_pem for n, st in self.statuses if n >= since]

    async def _check_token(self, context: Any) -> None:
        metadata = dict(context.invocation_metadata() or ())
        if metadata.get("authorization") != f"Bearer {TOKEN}":
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                "the dataplane token's signature does not verify")

    async def SignCertificate(self, request: Any, context: Any) -> Any:
        await self._check_token(context)
        csr = x509.load_pem_x509_csr(request.csr_pem)
        now = dt.datetime.now(dt.UTC)
        cert = sign_leaf(self.mesh.ca, csr, now, self.lifetime,
                         uris=[f"spiffe://{request.mesh}/backend"])
        self.signed.append(cert)
        answer = agent_pb2.SignResponse(
            certificate_chain_pem=cert.public_bytes(Encoding.PEM),
            trust_bundle_pem=self.mesh.ca.cert_pem())
        answer.expires_at.FromDatetime(cert.not_valid_after_utc)
        return answer

    async def Session(self, request_iterator: Any, context: Any) -> Any:
        await self._check_token(context)
        first = await anext(aiter(request_iterator))
        doc = json.loads(first.register_dataplane_json)
        self.registrations.append(doc)
        yield agent_pb2.ControlPlaneMessage(registered=agent_pb2.Registered(
            mesh=doc["mesh"], name=doc["name"], zone="lab",
            node_id=f"{doc['mesh']}.{doc['name']}"))
        queue: asyncio.Queue[agent_pb2.ControlPlaneMessage] = asyncio.Queue()
        self.live.add(queue)
        reader = asyncio.create_task(self._statuses(request_iterator,
                                                    len(self.registrations)))
        try:
            while True:
                try:
                    yield await asyncio.wait_for(queue.get(), 0.5)
                except TimeoutError:
                    yield agent_pb2.ControlPlaneMessage(heartbeat=agent_pb2.Heartbeat())
        finally:
            self.live.discard(queue)
            reader.cancel()

    async def _statuses(self, messages: Any, registration: int) -> None:
        async for message in messages:
            if message.WhichOneof("message") == "status":
                self.statuses.append((registration, message.status))


@dataclass
class AgentProcess:
    proc: asyncio.subprocess.Process
    work: Path
    stderr: Path

    def errors(self) -> str:
        return self.stderr.read_text()


def agent_files(directory: Path, cp: FakeZoneCp, token: str = TOKEN) -> list[str]:
    dp, token_file = directory / "backend.yaml", directory / "backend.token"
    dp.write_text(DATAPLANE)
    token_file.write_text(token)
    return ["--dataplane", str(dp), "--dataplane-var", "address=127.0.0.1",
            "--token-file", str(token_file), "--cp-ca", str(cp.tls.ca_file)]


@contextlib.asynccontextmanager
async def agent_process(directory: Path, args: list[str]) -> AsyncIterator[AgentProcess]:
    work = directory / "work"
    stderr = directory / "agent.err"
    # Several agents run side by side here: each resolver on a port of its own unless the
    # test picks one with --dns-addr.
    env = {**os.environ, "GOSSAMER_DNS_ADDR": os.environ.get("GOSSAMER_DNS_ADDR",
                                                             "127.0.0.1:0")}
    with open(stderr, "wb") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "from cli.run_proxy import run; run()",
            *args, "--work-dir", str(work), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=err, cwd=Path(__file__).parents[2], env=env)
    try:
        yield AgentProcess(proc, work, stderr)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        for pid in envoy_pids(work):
            os.kill(pid, signal.SIGKILL)


def envoy_pids(work: Path) -> list[int]:
    """Envoys started with a bootstrap in ``work`` (from /proc: no psutil needed)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if str(work / "envoy.yaml").encode() in argv and argv[0].endswith(b"envoy"):
                pids.append(int(entry.name))
    return pids

