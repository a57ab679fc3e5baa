"""What the tests of standalone zone CP replicas on one real PostgreSQL share.

``replica_process``: a real ``gossamer zone run --store postgres://…`` process (one that
a test can ``kill -9``); ``in_process_replica``: one in this process, whose parts a test
can read. ``Agent`` speaks a sidecar agent's protocol to a replica's agent API over its
real gRPC port (a Session that registers a Dataplane, then SignCertificate), so no Envoy
is needed; its token is a real dataplane token of the zone.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import grpc
import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from gossamer.election.replica import replica_id
from gossamer.settings import ZoneSettings
from sync.v1 import agent_pb2, agent_pb2_grpc
from tests.integration.cli_env import Proc, _clean_env, _free_port
from tests.waiting import eventually
from zone_cp.app import ZoneControlPlane

ZONE = "lab"
MESH = "default"
LEASE = 3.0  # seconds: a takeover within about 4


def replica_process(tmp: Path, name: str, store: str, agent_grace: float = 5.0) -> Proc:
    """A started replica process of zone ``lab`` (standalone) on ``store``."""
    data = tmp / name
    args = [
        "zone",
        "run",
        "--zone",
        ZONE,
        "--data-dir",
        str(data),
        "--store",
        store,
        "--api-addr",
        f"127.0.0.1:{_free_port()}",
        "--xds-addr",
        f"127.0.0.1:{_free_port()}",
        "--leader-lease",
        f"{LEASE:g}s",
        "--agent-grace",
        f"{agent_grace:g}s",
    ]
    env = _clean_env(tmp / f"{name}-config.yaml")
    api = "http://" + args[args.index("--api-addr") + 1]
    return Proc(args, tmp / f"{name}.log", api, env).start()


def xds_of(proc: Proc) -> str:
    return proc.args[proc.args.index("--xds-addr") + 1]


def data_of(proc: Proc) -> Path:
    return Path(proc.args[proc.args.index("--data-dir") + 1])


async def in_process_replica(
    directory: Path, store: str, agent_grace: float = 5.0
) -> ZoneControlPlane:
    cp = ZoneControlPlane(
        ZoneSettings(
            zone=ZONE,
            data_dir=directory,
            api_addr="127.0.0.1:0",
            xds_addr="127.0.0.1:0",
            store=store,
            leader_lease=LEASE,
            agent_grace=agent_grace,
        )
    )
    await cp.start()
    return cp


async def leads(api: str) -> bool:
    """The replica at ``api`` says on /metrics that it holds the zone's lease."""
    async with httpx.AsyncClient(base_url=api) as client:
        text = (await client.get("/metrics", timeout=5.0)).text
    return 'gossamer_leader{lease="zone"} 1.0' in text


def stamp_of(directory: Path) -> str:
    """The replica id a replica with this data dir stamps its agents' resources with."""
    return replica_id(directory)


def csr_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agent")])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    return csr.public_bytes(Encoding.PEM)


class Agent:
    """One sidecar agent's conversation with one replica: Dataplane ``name`` of service
    web, registered on a live Session."""

    def __init__(self, name: str, token: str) -> None:
        self.name = name
        self.auth = (("authorization", f"Bearer {token}"),)
        self._channel: grpc.aio.Channel | None = None
        self._session: grpc.aio.StreamStreamCall | None = None

    async def connect(self, xds: str, ca: Path) -> None:
        """Register through the replica at ``xds`` (its serving CA in ``ca``)."""
        await self.close()
        self._channel = grpc.aio.secure_channel(xds, grpc.ssl_channel_credentials(ca.read_bytes()))
        self._stub = agent_pb2_grpc.AgentStub(self._channel)
        session = self._session = self._stub.Session(metadata=self.auth)
        doc = {
            "type": "Dataplane",
            "mesh": MESH,
            "name": self.name,
            "networking": {
                "address": "127.0.0.1",
                "inbound": [{"port": _free_port(), "tags": {"gossamer.io/service": "web"}}],
            },
        }
        await session.write(agent_pb2.AgentMessage(register_dataplane_json=json.dumps(doc)))
        first = await asyncio.wait_for(session.read(), 15)
        assert first.WhichOneof("message") == "registered", first

    async def sign(self) -> list[x509.Certificate] | None:
        """The chain the replica signs a fresh CSR with; None while it cannot sign yet."""
        request = agent_pb2.SignRequest(mesh=MESH, dataplane=self.name, csr_pem=csr_pem())
        try:
            response = await self._stub.SignCertificate(request, metadata=self.auth, timeout=10)
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc
            return None
        return x509.load_pem_x509_certificates(response.certificate_chain_pem)

    async def signed(self) -> list[x509.Certificate]:
        chain = await eventually(self.sign, 20, f"{self.name}'s certificate")
        assert chain is not None
        return chain

    async def close(self) -> None:
        if self._session is not None:
            self._session.cancel()
        if self._channel is not None:
            await self._channel.close()
        self._session = self._channel = None
