"""A dataplane token is one identity, tried as an attacker would, through the real agent API.

A standalone zone CP runs in-process (memory store); each test talks gRPC over TLS to its
agent API as an agent would (``Session``, ``SignCertificate``) and checks what is refused,
with which status and message, and what the certificate of an admitted sidecar says.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import pytest
import pytest_asyncio
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from authority.token_authority import TokenAuthority
from gossamer.model.labels import AGENT_LABEL
from gossamer.model.registry import parse_document
from gossamer.pki.certs import new_csr, new_key, new_root_ca, uri_sans
from gossamer.settings import ZoneSettings
from gossamer.tokens import DATAPLANE, SigningKey, issue
from sync.v1 import agent_pb2, agent_pb2_grpc
from tests.builders import dataplane_doc
from tests.waiting import eventually
from zone_cp.agent_auth import UNTRUSTED
from zone_cp.app import ZoneControlPlane
from zone_cp.updates import TrustBundle

pytestmark = pytest.mark.asyncio(loop_scope="module")

MESH = "default"
_ports = iter(range(20000, 30000))


@dataclass
class Zone:
    cp: ZoneControlPlane
    ca_pem: bytes

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.cp.xds.port}"

    async def token(self, service: str, **binding: Any) -> str:
        token, _ = await TokenAuthority(self.cp.manager, DATAPLANE, MESH).issue(
            service, 600, **binding)
        return token

    def channel(self) -> grpc.aio.Channel:
        return grpc.aio.secure_channel(self.target, grpc.ssl_channel_credentials(self.ca_pem))


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def zone(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Zone]:
    directory = tmp_path_factory.mktemp("agent-identity")
    cp = ZoneControlPlane(ZoneSettings(zone="lab", data_dir=directory, api_addr="127.0.0.1:0",
                                       xds_addr="127.0.0.1:0", store="memory"))
    await cp.start()
    try:
        await eventually(lambda: cp.ca.issuer(MESH), timeout=15, what="the zone's issuer")
        yield Zone(cp, (directory / "tls" / "ca.pem").read_bytes())
    finally:
        await cp.stop()


def dataplane(name: str, *inbounds: Mapping[str, str], **labels: str) -> dict[str, Any]:
    """A Dataplane document with one inbound per tag set."""
    return dataplane_doc(name, mesh=MESH, address="127.0.0.1", labels=labels, inbounds=[
        {"port": next(_ports), "servicePort": 1, "tags": dict(tags)} for tags in inbounds])


def svc(service: str, **tags: str) -> dict[str, str]:
    return {"gossamer.io/service": service, **tags}


class Agent:
    """One agent's Session: registered, or refused with a status and a message."""

    def __init__(self, zone: Zone, token: str | None) -> None:
        self.zone, self.token = zone, token
        self.channel = zone.channel()
        metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.call = agent_pb2_grpc.AgentStub(self.channel).Session(metadata=metadata)

    async def register(self, doc: Any) -> agent_pb2.ControlPlaneMessage:
        raw = doc if isinstance(doc, str) else json.dumps(doc)
        await self.call.write(agent_pb2.AgentMessage(register_dataplane_json=raw))
        return await asyncio.wait_for(self.call.read(), 10)

    async def sign(self, name: str) -> list[str]:
        """The URI SANs of a certificate signed for this agent's Dataplane."""
        metadata = (("authorization", f"Bearer {self.token}"),)
        answer = await agent_pb2_grpc.AgentStub(self.channel).SignCertificate(
            agent_pb2.SignRequest(mesh=MESH, dataplane=name,
                                  csr_pem=_csr_pem("spiffe://default/admin")),
            metadata=metadata, timeout=10)
        return uri_sans(x509.load_pem_x509_certificates(answer.certificate_chain_pem)[0])

    async def close(self) -> None:
        self.call.cancel()
        await self.channel.close()


def _csr_pem(*uris: str) -> bytes:
    return new_csr(new_key(), "x", list(uris)).public_bytes(Encoding.PEM)


async def refused(zone: Zone, token: str | None, doc: Any) -> tuple[grpc.StatusCode, str]:
    agent = Agent(zone, token)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await agent.register(doc)
        return info.value.code(), info.value.details() or ""
    finally:
        await agent.close()


@pytest_asyncio.fixture(loop_scope="module")
async def agents(zone: Zone) -> AsyncIterator[list[Agent]]:
    opened: list[Agent] = []
    yield opened
    for agent in opened:
        await agent.close()
    await eventually(lambda: not zone.cp.agents.sessions, timeout=10,
                     what="every session of the test to end")


async def registered(zone: Zone, agents: list[Agent], token: str, doc: Any) -> Agent:
    agent = Agent(zone, token)
    agents.append(agent)
    first = await agent.register(doc)
    assert first.WhichOneof("message") == "registered", first
    return agent


# -- point 1: one token, one identity ---------------------------------------------------


async def test_a_web_token_cannot_register_or_sign_for_backend(zone: Zone,
                                                               agents: list[Agent]) -> None:
    web = await zone.token("web")
    code, detail = await refused(zone, web, dataplane(
        "web-1", svc("web"), svc("backend", version="v1")))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert "inbound[1]" in detail and "'backend'" in detail and "'web'" in detail
    assert "dp:default:web-1" not in zone.cp.agents.sessions

    # The honest registration: only what the token vouches for is certified, not the
    # version tag the agent chose, nor the identity the CSR asks for.
    agent = await registered(zone, agents, web, dataplane("web-1", svc("web", version="v2")))
    assert await agent.sign("web-1") == ["spiffe://default/web"]


async def test_a_pure_client_gets_its_tokens_service(zone: Zone, agents: list[Agent]) -> None:
    agent = await registered(zone, agents, await zone.token("client"), dataplane("client-1"))
    assert await agent.sign("client-1") == ["spiffe://default/client"]


async def test_a_token_binds_the_name_and_tags(zone: Zone, agents: list[Agent]) -> None:
    token = await zone.token("api", name="api-1", tags={"version": "v1"})
    code, detail = await refused(zone, token, dataplane("api-2", svc("api", version="v1")))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "'api-1'" in detail
    code, detail = await refused(zone, token, dataplane(
        "api-1", svc("api", version="v1"), svc("api", version="v2")))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert "version='v1'" in detail and "inbound[1]" in detail

    agent = await registered(zone, agents, token, dataplane(
        "api-1", svc("api", version="v1", team="x")))
    assert await agent.sign("api-1") == ["gossamer://version/v1", "spiffe://default/api"]


async def test_an_agent_cannot_take_over_a_dataplane_it_did_not_register(
        zone: Zone, agents: list[Agent]) -> None:
    doc = dataplane("db-1", svc("db"))
    await zone.cp.manager.apply(parse_document(doc))  # applied by hand at the zone
    code, detail = await refused(zone, await zone.token("db"), doc)
    assert code == grpc.StatusCode.ALREADY_EXISTS and "not registered by an agent" in detail
    stored = await zone.cp.manager.get("Dataplane", "db-1", MESH)
    assert AGENT_LABEL not in stored.labels  # neither overwritten nor deleted
    await zone.cp.manager.delete("Dataplane", "db-1", MESH)


@pytest.mark.parametrize("label", ["gossamer.io/zone", "gossamer.io/origin",
                                   "gossamer.io/display-name", AGENT_LABEL])
async def test_reserved_labels_are_refused(zone: Zone, label: str) -> None:
    code, detail = await refused(zone, await zone.token("cache"),
                                 dataplane("cache-1", svc("cache"), **{label: "x"}))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and label in detail


async def test_the_vip_opt_in_label_is_still_allowed(zone: Zone, agents: list[Agent]) -> None:
    await registered(zone, agents, await zone.token("cache"), dataplane(
        "cache-1", svc("cache"), **{"gossamer.io/vip-outbounds": "true"}))


# -- point 9: dataplanes per token --------------------------------------------------------


async def test_a_token_admits_max_dataplanes_at_once(zone: Zone, agents: list[Agent]) -> None:
    one = await zone.token("queue")
    first = await registered(zone, agents, one, dataplane("queue-1", svc("queue")))
    code, detail = await refused(zone, one, dataplane("queue-2", svc("queue")))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "at most 1 dataplane" in detail
    # Its own Dataplane again (a reconnect) is not a second one.
    again = await registered(zone, agents, one, dataplane("queue-1", svc("queue")))
    await first.close()

    two = await zone.token("queue", max_dataplanes=2)
    await registered(zone, agents, two, dataplane("queue-3", svc("queue")))
    await registered(zone, agents, two, dataplane("queue-4", svc("queue")))
    code, _ = await refused(zone, two, dataplane("queue-5", svc("queue")))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    # Once the first token's Dataplane goes, it may register another.
    await again.close()
    await eventually(lambda: "dp:default:queue-1" not in zone.cp.agents.sessions, timeout=10,
                     what="queue-1's session to end")
    await registered(zone, agents, one, dataplane("queue-6", svc("queue")))


# -- point 7: the token before anything else ----------------------------------------------


async def test_the_token_is_checked_before_the_registration_is_read(zone: Zone) -> None:
    code, detail = await refused(zone, None, "{not json")
    assert code == grpc.StatusCode.UNAUTHENTICATED and "no token" in detail


async def test_unknown_and_forged_meshes_are_answered_alike(zone: Zone) -> None:
    stranger = SigningKey.generate(0)
    unknown, _ = issue(stranger, DATAPLANE, "web", 600, mesh="no-such-mesh")
    forged, _ = issue(stranger, DATAPLANE, "web", 600, mesh=MESH)
    doc = dataplane("web-9", svc("web"))
    answers = {await refused(zone, unknown, {**doc, "mesh": "no-such-mesh"}),
               await refused(zone, forged, doc)}
    assert answers == {(grpc.StatusCode.UNAUTHENTICATED, UNTRUSTED)}


async def test_a_token_of_one_mesh_cannot_register_in_another(zone: Zone) -> None:
    await zone.cp.manager.apply(parse_document({"type": "Mesh", "name": "other"}))
    code, detail = await refused(zone, await zone.token("web"),
                                 {**dataplane("web-8", svc("web")), "mesh": "other"})
    assert code == grpc.StatusCode.PERMISSION_DENIED and "'other'" in detail


async def test_sign_certificate_checks_the_token_first(zone: Zone) -> None:
    async with zone.channel() as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await agent_pb2_grpc.AgentStub(channel).SignCertificate(
                agent_pb2.SignRequest(mesh=MESH, dataplane="nobody", csr_pem=b"x"), timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_ads_checks_the_token_before_the_node(zone: Zone) -> None:
    async with zone.channel() as channel:
        call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).DeltaAggregatedResources()
        request = discovery_pb2.DeltaDiscoveryRequest()
        request.node.id = "default.nobody"
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call.write(request)
            await asyncio.wait_for(call.read(), 10)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_an_oversized_message_is_refused_unread(zone: Zone) -> None:
    doc = json.dumps(dataplane("big-1", svc("big"))) + " " * (5 * 1024 * 1024)
    code, _ = await refused(zone, await zone.token("big"), doc)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED


# -- point 9: a slow agent cannot grow the CP's memory ------------------------------------


async def test_a_slow_agent_holds_one_pending_message_per_kind(zone: Zone,
                                                               agents: list[Agent]) -> None:
    agent = await registered(zone, agents, await zone.token("slow"),
                             dataplane("slow-1", svc("slow")))
    session = zone.cp.agents.sessions["dp:default:slow-1"]
    now = dt.datetime.now(dt.UTC)
    roots = [new_root_ca(f"root {i}", now, dt.timedelta(days=1)) for i in range(200)]
    for root in roots:  # the agent reads nothing meanwhile
        session.updates.put_nowait(TrustBundle(pem=root.cert_pem()))
        zone.cp.agents.trust.renew(MESH, lambda s: s is session)
    assert session.updates.qsize() <= 5
    seen = []
    while True:
        message = await asyncio.wait_for(agent.call.read(), 10)
        seen.append(message.WhichOneof("message"))
        if message.WhichOneof("message") == "trust_bundle" and (
                message.trust_bundle.pem == roots[-1].cert_pem()):
            break
    assert seen.count("trust_bundle") <= 3 and seen.count("renew") <= 2, seen


# -- the issue route ----------------------------------------------------------------------


async def test_the_api_issues_bound_tokens(zone: Zone, agents: list[Agent]) -> None:
    headers = {"authorization": f"Bearer {zone.cp.admin_token}"}
    async with httpx.AsyncClient(base_url=zone.cp.api_url, headers=headers) as client:
        answer = await client.post("/tokens/dataplane", json={
            "mesh": MESH, "service": "pay", "name": "pay-1", "tags": {"version": "v3"},
            "maxDataplanes": 1})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["name"] == "pay-1" and body["tags"] == {"version": "v3"}
        assert body["maxDataplanes"] == 1
        for bad in ({"maxDataplanes": 0}, {"tags": {"Bad Key": "x"}}, {"name": "Bad_Name"}):
            refusal = await client.post("/tokens/dataplane",
                                        json={"mesh": MESH, "service": "pay", **bad})
            assert refusal.status_code == 400, (bad, refusal.text)
    agent = await registered(zone, agents, body["token"], dataplane(
        "pay-1", svc("pay", version="v3")))
    assert await agent.sign("pay-1") == ["gossamer://version/v3", "spiffe://default/pay"]
