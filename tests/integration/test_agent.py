"""The agent's real parts against a real Envoy: SDS (both dialects) with rotation without a
restart, Envoy's supervision, the bootstrap as Envoy validates it, and the whole agent
process against a control plane that speaks the agent API (``FakeZoneCp`` below: the
contract of ``agent.proto``, so these tests do not depend on the zone CP's internals;
``test_agent_zone.py`` runs the agent against the real zone CP)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from envoy.service.secret.v3 import sds_pb2_grpc
from google.protobuf import json_format

from gossamer.pki.certs import KeyPair, bundle_digest, new_leaf, new_root_ca, sign_leaf
from gossamer.pki.serving import ensure_serving_tls
from proxy.agent import bootstrap as boot
from proxy.agent.envoy_process import EnvoyCommand, EnvoySupervisor, SupervisionPolicy
from proxy.agent.errors import EnvoyCannotStart
from proxy.agent.sds_server import SecretServer, cleanup_socket, socket_path
from proxy.agent.sds_state import SECRET_TYPE, secret_entries
from proxy.context import IDENTITY_SECRET, PROMETHEUS_TLS_SECRET, SDS_CLUSTER, TRUST_SECRET
from proxy.envoy import LISTENER_TYPE
from proxy.envoy_binary import envoy_binary
from sync import wire
from sync.engine import Engine
from sync.messages import Entry, Payload
from sync.v1 import agent_pb2, agent_pb2_grpc
from tests.waiting import eventually

ENVOY = envoy_binary()
NOW = dt.datetime.now(dt.UTC)
GOLDEN = Path(__file__).parent.parent / "unit" / "golden" / "agent"
_HCM = ("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
        "HttpConnectionManager")
_ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
_DOWNSTREAM_TLS = ("type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
                   "DownstreamTlsContext")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def admin_ready(port: int) -> bool:
    async with httpx.AsyncClient(timeout=1.0) as client:
        return (await client.get(f"http://127.0.0.1:{port}/ready")).status_code == 200


# -- the bootstrap, as Envoy sees it ----------------------------------------------------------

@pytest.mark.parametrize("name", ["bootstrap-ip.yaml", "bootstrap-dns.yaml"])
def test_envoy_accepts_the_golden_bootstraps(name: str) -> None:
    result = subprocess.run([str(ENVOY), "--mode", "validate", "--use-dynamic-base-id",
                             "--config-path", str(GOLDEN / name)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "OK" in result.stdout + result.stderr


# -- SDS to a real Envoy ---------------------------------------------------------------------

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


@pytest.fixture
async def sds(tmp_path: Path) -> AsyncIterator[SecretServer]:
    server = SecretServer()
    sock = socket_path(tmp_path)
    await server.start(sock)
    yield server
    await server.stop()
    cleanup_socket(sock, tmp_path)


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


# -- supervision -----------------------------------------------------------------------------

def admin_only_bootstrap(admin_port: int) -> dict[str, Any]:
    return {"node": {"id": "supervised", "cluster": "test"},
            "admin": {"address": {"socket_address": {"address": "127.0.0.1",
                                                     "port_value": admin_port}}}}


async def test_a_killed_envoy_is_restarted(tmp_path: Path) -> None:
    admin = free_port()
    policy = SupervisionPolicy(startup_window=0.3, restart_initial=0.05)
    command = envoy_command(tmp_path, admin_only_bootstrap(admin))
    loop = asyncio.get_running_loop()
    async with supervised(command, admin, policy) as (envoy, task):
        await eventually(lambda: admin_ready(admin), timeout=20, what="Envoy's admin")
        await eventually(lambda: loop.time() - (envoy.started_at or loop.time()) > 0.3,
                         what="the startup window to pass")
        first = envoy.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        await eventually(lambda: envoy.pid not in (None, first), timeout=10,
                         what="a new Envoy")
        await eventually(lambda: admin_ready(admin), timeout=20, what="the new Envoy's admin")
        assert envoy.starts == 2 and not task.done()
        log = command.log_file.read_text()
        assert log.count("--- gossamer:") == 2


async def test_a_hot_restart_replaces_envoy_and_its_parent_exits(tmp_path: Path) -> None:
    """The next epoch joins the running Envoy's base id and takes its admin port over;
    the parent exits after its drain, and the supervisor follows the new process."""
    admin = free_port()
    command = envoy_command(tmp_path, admin_only_bootstrap(admin), drain_time=1)
    async with supervised(command, admin) as (envoy, task):
        await eventually(lambda: admin_ready(admin), timeout=20, what="Envoy's admin")
        first = envoy.pid
        assert first is not None and await envoy.hot_restart()
        assert envoy.pid not in (None, first) and envoy.epoch == 1
        await eventually(lambda: first not in envoy_pids(tmp_path), timeout=15,
                         what="the parent to exit after its drain")
        assert await admin_ready(admin) and envoy.epoch == 1 and not task.done()
        assert envoy_pids(tmp_path) == [envoy.pid]
        assert "--restart-epoch 1" in command.log_file.read_text()


async def test_a_failed_hot_restart_falls_back_to_a_plain_restart(tmp_path: Path) -> None:
    """A new epoch that cannot join its parent (here: a base id nobody holds) dies while
    the parent runs; the parent, still on the old bootstrap, is stopped and Envoy started
    again at epoch 0."""
    admin = free_port()
    policy = SupervisionPolicy(restart_initial=0.05)
    command = envoy_command(tmp_path, admin_only_bootstrap(admin), drain_time=1)
    async with supervised(command, admin, policy) as (envoy, task):
        await eventually(lambda: admin_ready(admin), timeout=20, what="Envoy's admin")
        first = envoy.pid
        command.base_id_file.write_text(str(int(command.base_id_file.read_text()) + 7))
        assert await envoy.hot_restart()
        await eventually(lambda: envoy.epoch == 0 and envoy.pid not in (None, first)
                         and envoy.starts == 3, timeout=20, what="a plain restart")
        await eventually(lambda: admin_ready(admin), timeout=20, what="the new Envoy's admin")
        assert first not in envoy_pids(tmp_path) and not task.done()


async def test_an_envoy_that_cannot_bind_its_admin_port_fails_with_its_log(
        tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        admin = taken.getsockname()[1]
        command = envoy_command(tmp_path, admin_only_bootstrap(admin))
        async with supervised(command, admin) as (_, task):
            with pytest.raises(EnvoyCannotStart) as info:
                await asyncio.wait_for(task, 30)
    assert "after it started" in info.value.detail
    assert any("Address already in use" in line or "cannot bind" in line
               for line in info.value.log_tail), info.value.log_tail


async def test_stop_drains_and_is_bounded(tmp_path: Path, sds: SecretServer) -> None:
    mesh = Pki()
    pair = mesh.workload()
    sds.update(secret_entries(pair.cert_pem(), pair.key_pem(), mesh.ca.cert_pem()))
    admin, port = free_port(), free_port()
    assert sds.path is not None
    command = envoy_command(tmp_path / "envoy",
                            tls_listener_bootstrap(admin, port, sds.path, "GRPC"),
                            drain_time=2.0)
    loop = asyncio.get_running_loop()
    async with supervised(command, admin) as (envoy, task):
        await eventually(lambda: asyncio.to_thread(
            handshake, port, mesh.ca.cert_pem(), mesh.workload(), tmp_path), timeout=20,
            what="Envoy serving")
        pid = envoy.pid
        # an idle Envoy stops at once: nothing to drain
        started = loop.time()
        await envoy.stop()
        assert loop.time() - started < 2.0
        await asyncio.wait_for(task, 5)  # the supervisor does not restart it
        assert pid is not None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


# -- the whole agent process -----------------------------------------------------------------

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


@pytest.fixture
async def zone_cp(tmp_path: Path) -> AsyncIterator[FakeZoneCp]:
    cp = FakeZoneCp(tmp_path / "cp-tls", lifetime=dt.timedelta(seconds=6))
    await cp.start()
    yield cp
    with contextlib.suppress(Exception):
        await cp.stop()


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


async def served_secrets(sock: Path, names: tuple[str, ...] = (IDENTITY_SECRET, TRUST_SECRET)
                         ) -> dict[str, secret_pb2.Secret]:
    """What the agent's SDS serves right now, asked as Envoy would ask."""
    out = {}
    async with grpc.aio.insecure_channel(f"unix:{sock}") as channel:
        call = sds_pb2_grpc.SecretDiscoveryServiceStub(channel).StreamSecrets()
        await call.write(discovery_pb2.DiscoveryRequest(
            node=base_pb2.Node(id="test"), type_url=SECRET_TYPE,
            resource_names=list(names)))
        response = await asyncio.wait_for(call.read(), 5)
        call.cancel()
    for resource in response.resources:
        secret = secret_pb2.Secret()
        resource.Unpack(secret)
        out[secret.name] = secret
    return out


async def test_the_agent_runs_envoy_rotates_and_drains(tmp_path: Path,
                                                       zone_cp: FakeZoneCp) -> None:
    admin = free_port()
    metrics = Pki().workload()
    (tmp_path / "metrics.pem").write_bytes(metrics.cert_pem())
    (tmp_path / "metrics-key.pem").write_bytes(metrics.key_pem())
    args = [*agent_files(tmp_path, zone_cp), "--cp", zone_cp.url, "--admin-port", str(admin),
            "--drain-time", "2s", "--envoy-log-level", "info",
            "--metrics-cert-file", str(tmp_path / "metrics.pem"),
            "--metrics-key-file", str(tmp_path / "metrics-key.pem")]
    async with agent_process(tmp_path, args) as agent:
        async def node_id() -> str:
            async with httpx.AsyncClient(timeout=1.0) as client:
                info = (await client.get(f"http://127.0.0.1:{admin}/server_info")).json()
            return str(info["node"]["id"])

        assert await eventually(node_id, timeout=30, what="Envoy's admin"
                                ) == "default.backend-1"
        assert zone_cp.registrations[0]["name"] == "backend-1"
        assert zone_cp.registrations[0]["networking"]["address"] == "127.0.0.1"
        [pid] = envoy_pids(agent.work)

        bootstrap = agent.work / "envoy.yaml"
        assert bootstrap.stat().st_mode & 0o077 == 0
        doc = yaml.safe_load(bootstrap.read_text())
        assert doc["admin"]["address"]["socket_address"]["port_value"] == admin
        sock = Path(doc["static_resources"]["clusters"][1]["load_assignment"]["endpoints"][0][
            "lb_endpoints"][0]["endpoint"]["address"]["pipe"]["path"])
        assert sock.stat().st_mode & 0o077 == 0
        assert not list(agent.work.glob("*key*"))  # the private key stays in memory

        # The certificate the CP signed is what SDS serves, and renewals replace it.
        async def serves_latest() -> bool:
            secrets = await served_secrets(sock)
            chain = secrets[IDENTITY_SECRET].tls_certificate.certificate_chain.inline_bytes
            return chain == zone_cp.signed[-1].public_bytes(Encoding.PEM)

        await eventually(serves_latest, timeout=10, what="the first certificate over SDS")
        # ...and what the agent reports: the chain it serves, the bundle's digest.
        first = zone_cp.signed[0].public_bytes(Encoding.PEM)
        await eventually(lambda: first in zone_cp.reported_chains(), timeout=10,
                         what="the first certificate to be reported")
        assert zone_cp.statuses[0][1].trust_bundle_digest == bundle_digest(
            zone_cp.mesh.ca.cert_pem())
        provided = (await served_secrets(sock, (PROMETHEUS_TLS_SECRET,)))[PROMETHEUS_TLS_SECRET]
        assert provided.tls_certificate.certificate_chain.inline_bytes == metrics.cert_pem()
        await eventually(lambda: len(zone_cp.signed) >= 3, timeout=20,
                         what="two renewals of a 6 s certificate")
        await eventually(serves_latest, timeout=10, what="the renewed certificate over SDS")
        assert envoy_pids(agent.work) == [pid]
        renewed = zone_cp.signed[1].public_bytes(Encoding.PEM)
        await eventually(lambda: renewed in zone_cp.reported_chains(), timeout=10,
                         what="the renewed certificate to be reported")

        # A trust bundle pushed on the Session reaches SDS.
        bundle = zone_cp.mesh.ca.cert_pem() + Pki().ca.cert_pem()
        zone_cp.push_trust_bundle(bundle)

        async def serves_bundle() -> bool:
            secrets = await served_secrets(sock)
            return secrets[TRUST_SECRET].validation_context.trusted_ca.inline_bytes == bundle

        await eventually(serves_bundle, timeout=10, what="the new trust bundle over SDS")
        await eventually(lambda: bundle_digest(bundle) in {
            st.trust_bundle_digest for _, st in zone_cp.statuses}, timeout=10,
            what="the new bundle's digest to be reported")

        # The control plane goes away: Envoy stays; it comes back: the agent registers again.
        port = zone_cp.port
        await zone_cp.stop()
        await asyncio.sleep(0)  # let the session notice (the check below waits properly)
        await eventually(lambda: not zone_cp.live, timeout=10, what="the session to break")
        last_before_restart, signed = zone_cp.statuses[-1][1], len(zone_cp.signed)
        assert envoy_pids(agent.work) == [pid]
        await zone_cp.start(port)
        await eventually(lambda: len(zone_cp.registrations) >= 2, timeout=30,
                         what="the agent to register again")
        assert envoy_pids(agent.work) == [pid]
        # The latest status comes again right after the new registration.
        await eventually(lambda: zone_cp.reported_chains(since=2), timeout=10,
                         what="a status after registering again")
        again = next(st for n, st in zone_cp.statuses if n >= 2)
        # (or the certificate of a renewal whose status the stop cut off, or that got
        # through between the CP's return and the registration)
        latest = [c.public_bytes(Encoding.PEM) for c in zone_cp.signed[signed - 1:]]
        assert again == last_before_restart or again.certificate_chain_pem in latest

        agent.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(agent.proc.wait(), 15) == 0, agent.errors()
        assert envoy_pids(agent.work) == []
        assert not sock.exists()
        assert "Traceback" not in agent.errors()


class AdsZoneCp(FakeZoneCp, ads_pb2_grpc.AggregatedDiscoveryServiceServicer):
    """``FakeZoneCp`` plus delta ADS with one inbound TLS listener whose client CA is the
    agent's trust secret, so the agent's Envoy subscribes to the trust bundle over SDS (a
    real zone CP's listeners do the same)."""

    def __init__(self, directory: Path, sds_api_type: str = "GRPC") -> None:
        super().__init__(directory)
        # only the listener is taken: its secrets name SDS_CLUSTER, the agent's socket
        listener = tls_listener_bootstrap(free_port(), free_port(), Path("unused"),
                                          sds_api_type)["static_resources"]["listeners"][0]
        body = json_format.ParseDict(listener, listener_pb2.Listener()).SerializeToString()
        self.ads = Engine()
        self.ads.set_desired(LISTENER_TYPE, {"inbound": Entry(
            version=hashlib.sha256(body).hexdigest()[:16],
            payload=Payload(LISTENER_TYPE, body))})
        self._sids = iter(range(1, 1 << 30))

    async def start(self, port: int = 0) -> None:
        await super().start(port)
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(self, self._server)

    async def DeltaAggregatedResources(self, request_iterator: Any, context: Any) -> Any:
        await self._check_token(context)
        sid = f"envoy-{next(self._sids)}"
        self.ads.connect(sid)
        try:
            async for message in request_iterator:
                for response in self.ads.on_request(sid, wire.request_from_proto(message),
                                                    time.monotonic()):
                    yield wire.response_to_proto(response)
        finally:
            self.ads.disconnect(sid)


async def envoy_trusted_ca(admin: int) -> bytes | None:
    """The trust bundle Envoy holds (from its config dump), None before it has one."""
    async with httpx.AsyncClient(timeout=1.0) as client:
        dump = (await client.get(f"http://127.0.0.1:{admin}/config_dump",
                                 params={"resource": "dynamic_active_secrets"})).json()
    for config in dump.get("configs", []):
        if config.get("name") == TRUST_SECRET:
            inline = config["secret"]["validation_context"]["trusted_ca"]["inline_bytes"]
            return base64.b64decode(inline)
    return None


@pytest.mark.parametrize("api_type", ["GRPC", "DELTA_GRPC"])
async def test_the_bundle_digest_is_reported_once_envoy_has_the_bundle(
        tmp_path: Path, api_type: str) -> None:
    """A pushed bundle is reported once Envoy ACKed it; a bundle Envoy refuses (a PEM that
    parses in Python, but whose CRL block Envoy cannot load) is never reported: the
    previous digest stays."""
    admin = free_port()
    cp = AdsZoneCp(tmp_path / "cp-tls", api_type)
    await cp.start()
    args = [*agent_files(tmp_path, cp), "--cp", cp.url, "--admin-port", str(admin)]
    try:
        async with agent_process(tmp_path, args) as agent:
            first = cp.mesh.ca.cert_pem()
            assert await eventually(lambda: envoy_trusted_ca(admin), timeout=60,
                                    what="Envoy to load the first bundle") == first
            assert cp.statuses[-1][1].trust_bundle_digest == bundle_digest(first)

            two_roots = first + Pki().ca.cert_pem()
            cp.push_trust_bundle(two_roots)
            await eventually(lambda: bundle_digest(two_roots) in {
                st.trust_bundle_digest for _, st in cp.statuses}, timeout=20,
                what="the two-root bundle's digest to be reported")
            # reported only after the ACK, so Envoy holds it by now
            assert await envoy_trusted_ca(admin) == two_roots

            refused = (first + Pki().ca.cert_pem()
                       + b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n")
            assert bundle_digest(refused) not in {bundle_digest(first),
                                                  bundle_digest(two_roots)}
            cp.push_trust_bundle(refused)
            await eventually(lambda: "Envoy refused the trust bundle" in agent.errors(),
                             timeout=20, what="the refusal to be logged")
            assert "Failed to load trusted CA certificates" in agent.errors()
            # Statuses are ordered on the Session: once the next good bundle's digest
            # arrives, any report of the refused one would have arrived before it.
            fixed = first + Pki().ca.cert_pem()
            cp.push_trust_bundle(fixed)
            await eventually(lambda: cp.statuses[-1][1].trust_bundle_digest
                             == bundle_digest(fixed), timeout=20,
                             what="the fixed bundle's digest to be reported")
            reported = [st.trust_bundle_digest for _, st in cp.statuses]
            assert bundle_digest(refused) not in reported
            assert reported.index(bundle_digest(two_roots)) < len(reported) - 1
            assert await envoy_trusted_ca(admin) == fixed
    finally:
        await cp.stop()


async def test_a_wrong_token_is_one_line_and_exit_1(tmp_path: Path,
                                                    zone_cp: FakeZoneCp) -> None:
    other = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJvdGhlciJ9.Zm9yZ2Vk"
    args = [*agent_files(tmp_path, zone_cp, token=other), "--cp", zone_cp.url,
            "--admin-port", str(free_port()), "--log-level", "error"]
    async with agent_process(tmp_path, args) as agent:
        assert await asyncio.wait_for(agent.proc.wait(), 30) == 1
        lines = agent.errors().strip().splitlines()
        assert lines == ["error: the control plane refused the dataplane's registration: "
                         "the dataplane token's signature does not verify (UNAUTHENTICATED)"]
        assert envoy_pids(agent.work) == []


async def test_an_envoy_that_cannot_bind_ends_the_agent_with_its_log(
        tmp_path: Path, zone_cp: FakeZoneCp) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        args = [*agent_files(tmp_path, zone_cp), "--cp", zone_cp.url,
                "--admin-port", str(taken.getsockname()[1]), "--log-level", "error"]
        async with agent_process(tmp_path, args) as agent:
            assert await asyncio.wait_for(agent.proc.wait(), 60) == 1
    err = agent.errors()
    assert "error: Envoy exited with code 1" in err
    assert "the last lines of Envoy's log:" in err
    assert "Address already in use" in err
    assert "Traceback" not in err


async def test_the_agent_waits_for_a_control_plane_that_is_down(
        tmp_path: Path) -> None:
    cp = FakeZoneCp(tmp_path / "cp-tls")
    port = free_port()
    args = [*agent_files(tmp_path, cp), "--cp", f"https://127.0.0.1:{port}",
            "--admin-port", str(free_port())]
    async with agent_process(tmp_path, args) as agent:
        await eventually(lambda: "UNAVAILABLE" in agent.errors(), timeout=20,
                         what="a failed attempt to be logged")
        assert agent.proc.returncode is None
        await cp.start(port)
        try:
            await eventually(lambda: cp.registrations and envoy_pids(agent.work), timeout=60,
                             what="registration and Envoy once the CP is up")
        finally:
            await cp.stop()
        agent.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(agent.proc.wait(), 15) == 0


async def test_envoy_dies_with_a_killed_agent(tmp_path: Path, zone_cp: FakeZoneCp) -> None:
    args = [*agent_files(tmp_path, zone_cp), "--cp", zone_cp.url,
            "--admin-port", str(free_port())]
    async with agent_process(tmp_path, args) as agent:
        [pid] = await eventually(lambda: envoy_pids(agent.work), timeout=30, what="Envoy")
        agent.proc.kill()
        await agent.proc.wait()
        await eventually(lambda: not envoy_pids(agent.work), timeout=10,
                         what=f"Envoy {pid} to exit with its agent")


class SilentZoneCp(FakeZoneCp):
    """Registers the agent, then says nothing ever again: a half-dead path."""

    async def Session(self, request_iterator: Any, context: Any) -> Any:
        first = await anext(aiter(request_iterator))
        doc = json.loads(first.register_dataplane_json)
        self.registrations.append(doc)
        yield agent_pb2.ControlPlaneMessage(registered=agent_pb2.Registered(
            mesh="default", name=doc["name"], zone="lab", node_id="default.backend-1"))
        await asyncio.Event().wait()


async def test_a_silent_session_is_torn_down_and_registered_again(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from proxy.agent.cp_client import AgentClient, ControlPlaneAddress
    from proxy.agent.session import Session, SessionPolicy

    cp = SilentZoneCp(tmp_path / "cp-tls")
    await cp.start()
    client = AgentClient(ControlPlaneAddress("127.0.0.1", cp.port), cp.tls.ca_file.read_bytes(),
                         TOKEN)
    session = Session(client, json.dumps({"name": "backend-1"}), on_trust_bundle=lambda _: None,
                      policy=SessionPolicy(interval=0.1, timeout=0.5, backoff_initial=0.05))
    task = asyncio.create_task(session.run())
    try:
        assert (await asyncio.wait_for(session.registered, 10)).node_id == "default.backend-1"
        await eventually(lambda: session.connects >= 2, timeout=10,
                         what="the stalled session to be replaced")
        assert any("nothing received for 0.5s" in r.getMessage() for r in caplog.records)
        assert len(cp.registrations) >= 2
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.close()
        await cp.stop()


async def test_a_refusal_before_registration_ends_the_session(tmp_path: Path) -> None:
    from proxy.agent.cp_client import AgentClient, ControlPlaneAddress
    from proxy.agent.errors import ControlPlaneRefused
    from proxy.agent.session import Session

    cp = FakeZoneCp(tmp_path / "cp-tls")
    await cp.start()
    client = AgentClient(ControlPlaneAddress("localhost", cp.port), cp.tls.ca_file.read_bytes(),
                         "wrong.token.here")
    session = Session(client, "{}", on_trust_bundle=lambda _: None)
    try:
        await asyncio.wait_for(session.run(), 10)  # returns: no retry on a refusal
        with pytest.raises(ControlPlaneRefused, match="UNAUTHENTICATED"):
            session.registered.result()
    finally:
        await client.close()
        await cp.stop()
