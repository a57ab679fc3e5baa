"""One simulated sidecar: a real agent Session, a real CSR, and an Envoy-like delta ADS stream.

What it sends is what a real sidecar sends, through the same gRPC services:

- the agent (``proxy/agent/session.py``): ``Agent.Session`` with the dataplane token as
  bearer metadata, the Dataplane document as the first message, ``Registered`` back (the
  node id ``dp:<mesh>:<name>``), then the stream stays open (its end unregisters the
  Dataplane); then ``SignCertificate`` with a fresh key's CSR
  (``proxy.agent.keygen.new_request``);
- Envoy (delta ADS, ``DeltaAggregatedResources``, the same token): CDS and LDS with
  wildcard subscriptions (the node on the first request), then EDS for the EDS clusters'
  service names and RDS for the route names its HTTP connection managers reference,
  following both as they change, and an ACK (the response's nonce) for every response.

From what arrives it keeps only what the benchmark reads (``Seen``): each cluster's
connect timeout in milliseconds and each load assignment's endpoint addresses, plus how
many responses arrived. Everything else is decoded only as far as Envoy must (clusters for
their EDS names, listeners for their RDS names) and otherwise dropped. After each ACK it
calls ``on_ack`` so that watches (``tests.bench.fleet.watches``) can check it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from proxy.agent.keygen import new_request
from proxy.envoy.resources import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE
from sync.v1 import agent_pb2, agent_pb2_grpc

HCM_URL = "type.googleapis.com/" + hcm_pb2.HttpConnectionManager.DESCRIPTOR.full_name
CALL_TIMEOUT = 30.0


@dataclass
class Seen:
    """What the simulated Envoy holds, reduced to what the benchmark checks."""

    connect_ms: dict[str, int] = field(default_factory=dict)  # cluster -> connect timeout
    endpoints: dict[str, frozenset[str]] = field(default_factory=dict)  # CLA -> ip:port
    responses: int = 0
    types: set[str] = field(default_factory=set)  # types that have had a response


@dataclass(frozen=True)
class Channels:
    """Where a sidecar's calls go: ``agent`` (its agent's Session and SignCertificate)
    and ``ads`` (its Envoy's stream). ``owned``: the sidecar's own two connections, as a
    real sidecar has, closed with it; otherwise channels shared with other sidecars."""

    agent: grpc.aio.Channel
    ads: grpc.aio.Channel
    owned: bool = False

    async def close(self) -> None:
        if self.owned:
            await self.agent.close()
            await self.ads.close()


@dataclass(frozen=True)
class Spec:
    """One sidecar: its Dataplane's name, service, address and outbound services."""

    name: str
    service: str
    address: str
    outbounds: tuple[str, ...]
    protocol: str = "http"

    def document(self, mesh: str) -> dict[str, Any]:
        svc = "gossamer.io/service"
        return {"type": "Dataplane", "name": self.name, "mesh": mesh,
                # Only its explicit outbounds, as in bench_config_gen's mesh: without the
                # label every sidecar would listen on every service's VIP.
                "labels": {"gossamer.io/vip-outbounds": "false"},
                "networking": {"address": self.address, "inbound": [
                    {"port": 18080, "servicePort": 8080,
                     "tags": {svc: self.service, "gossamer.io/protocol": self.protocol}}],
                    "outbound": [{"port": 20001 + i, "tags": {svc: s}}
                                 for i, s in enumerate(self.outbounds)]}}


def _ms(duration: Any) -> int:
    return int(duration.seconds * 1000 + duration.nanos // 1_000_000)


def _rds_names(listener: listener_pb2.Listener) -> set[str]:
    names = set()
    for chain in listener.filter_chains:
        for f in chain.filters:
            if f.typed_config.type_url == HCM_URL:
                hcm = hcm_pb2.HttpConnectionManager()
                f.typed_config.Unpack(hcm)
                if hcm.HasField("rds"):
                    names.add(hcm.rds.route_config_name)
    return names


class Sidecar:
    """Registers, signs, and follows ADS until ``close``; ``on_ack`` after every ACK."""

    def __init__(self, spec: Spec, mesh: str, token: str, channels: Channels,
                 on_ack: Callable[[Sidecar], None]) -> None:
        self.spec = spec
        self.mesh = mesh
        self.seen = Seen()
        self.node_id = ""
        self._metadata = (("authorization", f"Bearer {token}"),)
        self._channels = channels
        self._on_ack = on_ack
        self._session: Any = None
        self._ads: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._eds: set[str] = set()  # the EDS names subscribed
        self._rds: dict[str, set[str]] = {}  # listener -> the route names it references
        self._routes: set[str] = set()  # the RDS names subscribed
        self._clusters_eds: dict[str, str] = {}  # cluster -> its EDS service name
        self.synced = asyncio.Event()  # CDS, LDS and EDS have each been ACKed once
        self.registered_at = 0.0

    async def register(self) -> None:
        """Open the Session and wait for ``Registered`` (the node id)."""
        self._session = agent_pb2_grpc.AgentStub(self._channels.agent).Session(
            metadata=self._metadata)
        self.registered_at = time.monotonic()
        await self._session.write(agent_pb2.AgentMessage(
            register_dataplane_json=json.dumps(self.spec.document(self.mesh))))
        first = await asyncio.wait_for(self._session.read(), CALL_TIMEOUT)
        if first is grpc.aio.EOF or first.WhichOneof("message") != "registered":
            raise RuntimeError(f"{self.spec.name}: no registration, got {first!r}")
        self.node_id = first.registered.node_id
        self._tasks.append(asyncio.create_task(self._drain_session()))

    async def sign(self) -> None:
        _key, csr = new_request(self.spec.name)
        request = agent_pb2.SignRequest(mesh=self.mesh, dataplane=self.spec.name, csr_pem=csr)
        await agent_pb2_grpc.AgentStub(self._channels.agent).SignCertificate(
            request, metadata=self._metadata, timeout=CALL_TIMEOUT)

    async def _drain_session(self) -> None:
        """Read what the CP streams (trust bundles, DNS tables, heartbeats); answer a
        heartbeat with one, as the agent does."""
        while True:
            message = await self._session.read()
            if message is grpc.aio.EOF:
                return
            if message.WhichOneof("message") == "heartbeat":
                await self._session.write(agent_pb2.AgentMessage(
                    heartbeat=agent_pb2.Heartbeat()))

    async def connect_ads(self) -> None:
        """Open the ADS stream as Envoy does: CDS and LDS wildcard, the node first."""
        self._ads = ads_pb2_grpc.AggregatedDiscoveryServiceStub(
            self._channels.ads).DeltaAggregatedResources(metadata=self._metadata)
        first = discovery_pb2.DeltaDiscoveryRequest(type_url=CLUSTER_TYPE)
        first.node.CopyFrom(base_pb2.Node(id=self.node_id, cluster=self.spec.service))
        await self._ads.write(first)
        await self._ads.write(discovery_pb2.DeltaDiscoveryRequest(type_url=LISTENER_TYPE))
        self._tasks.append(asyncio.create_task(self._follow_ads()))

    async def _follow_ads(self) -> None:
        while True:
            response = await self._ads.read()
            if response is grpc.aio.EOF:
                return
            await self._apply(response)
            await self._ads.write(discovery_pb2.DeltaDiscoveryRequest(
                type_url=response.type_url, response_nonce=response.nonce))
            self.seen.responses += 1
            self.seen.types.add(response.type_url)
            if {CLUSTER_TYPE, LISTENER_TYPE, ENDPOINT_TYPE} <= self.seen.types:
                self.synced.set()
            self._on_ack(self)

    async def _apply(self, response: discovery_pb2.DeltaDiscoveryResponse) -> None:
        kind = response.type_url
        if kind == CLUSTER_TYPE:
            await self._clusters(response)
        elif kind == LISTENER_TYPE:
            await self._listeners(response)
        elif kind == ENDPOINT_TYPE:
            for name in response.removed_resources:
                self.seen.endpoints.pop(name, None)
            for r in response.resources:
                cla = endpoint_pb2.ClusterLoadAssignment()
                r.resource.Unpack(cla)
                self.seen.endpoints[r.name] = frozenset(
                    f"{e.endpoint.address.socket_address.address}:"
                    f"{e.endpoint.address.socket_address.port_value}"
                    for group in cla.endpoints for e in group.lb_endpoints)

    async def _clusters(self, response: discovery_pb2.DeltaDiscoveryResponse) -> None:
        for name in response.removed_resources:
            self.seen.connect_ms.pop(name, None)
            self._clusters_eds.pop(name, None)
        for r in response.resources:
            cluster = cluster_pb2.Cluster()
            r.resource.Unpack(cluster)
            self.seen.connect_ms[r.name] = _ms(cluster.connect_timeout)
            if cluster.type == cluster_pb2.Cluster.EDS:
                self._clusters_eds[r.name] = (cluster.eds_cluster_config.service_name
                                              or r.name)
        await self._resubscribe(ENDPOINT_TYPE, self._eds, set(self._clusters_eds.values()))

    async def _listeners(self, response: discovery_pb2.DeltaDiscoveryResponse) -> None:
        for name in response.removed_resources:
            self._rds.pop(name, None)
        for r in response.resources:
            listener = listener_pb2.Listener()
            r.resource.Unpack(listener)
            self._rds[r.name] = _rds_names(listener)
        wanted = set().union(*self._rds.values()) if self._rds else set()
        await self._resubscribe(ROUTE_TYPE, self._routes, wanted)

    async def _resubscribe(self, type_url: str, held: set[str], wanted: set[str]) -> None:
        """Subscribe to what is newly ``wanted`` of ``type_url`` and drop what is not;
        ``held`` (the subscribed names) becomes ``wanted``."""
        new, gone = wanted - held, held - wanted
        if new or gone:
            await self._ads.write(discovery_pb2.DeltaDiscoveryRequest(
                type_url=type_url, resource_names_subscribe=sorted(new),
                resource_names_unsubscribe=sorted(gone)))
            held.clear()
            held.update(wanted)

    async def close(self) -> None:
        for call in (self._ads, self._session):
            if call is not None:
                call.cancel()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._session = self._ads = None
        self._tasks.clear()
        await self._channels.close()
