"""The agent API on the zone CP: sessions that register Dataplanes, and certificate signing.

A sidecar agent opens one ``Session`` for its lifetime. Its first message registers the
Dataplane: the document is validated, the dataplane token must be valid for the
Dataplane's mesh and name one of its services, and a name already held by a live agent
with a different token is refused. The Dataplane is stored while the session lives and
removed when it ends. ``SignCertificate`` signs a CSR for a registered Dataplane only,
with the identity the control plane derives from it (``zone_cp.ca``).

Other kinds of agents register through the same Session with their own document: a
``ZoneIngress`` goes to the ``Registrar`` given for that kind (``zone_cp.ingresses``),
which authenticates it and keeps its sessions apart from the Dataplanes'.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
from cryptography import x509

from gossamer.errors import GossamerError, InvalidResource, NotFound
from gossamer.model.base import Resource, parse_document
from gossamer.model.dataplane import DataplaneSpec
from gossamer.resources import ResourceManager
from gossamer.token_authority import TokenAuthority
from gossamer.tokens import DATAPLANE, Claims, TokenRejected
from sync.v1 import agent_pb2, agent_pb2_grpc
from zone_cp.ca import CaUnavailable, ZoneCa

log = logging.getLogger(__name__)

MAX_CSR = 16 * 1024
HEARTBEAT = 5.0
CpMessage = agent_pb2.ControlPlaneMessage


@dataclass
class AgentSession:
    mesh: str
    name: str
    claims: Claims
    dataplane: Resource
    connected_at: float
    cert_expiry: dt.datetime | None = None
    cert_serial: str = ""
    updates: asyncio.Queue[agent_pb2.ControlPlaneMessage] = field(default_factory=asyncio.Queue)

    @property
    def node_id(self) -> str:
        return f"{self.mesh}.{self.name}"

    @property
    def spec(self) -> DataplaneSpec:
        if not isinstance(self.dataplane.spec, DataplaneSpec):
            raise TypeError("a session holds a Dataplane")
        return self.dataplane.spec


class Refused(Exception):
    def __init__(self, code: grpc.StatusCode, detail: str) -> None:
        super().__init__(detail)
        self.code, self.detail = code, detail


def bearer(context: grpc.aio.ServicerContext) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and str(value).lower().startswith("bearer "):
            return str(value)[7:].strip()
    return None


class OtherSession(Protocol):
    """A live agent of another kind than a sidecar (what the Session stream needs)."""

    kind: str
    mesh: str
    name: str
    updates: asyncio.Queue[CpMessage]

    @property
    def node_id(self) -> str: ...


class Registrar(Protocol):
    """Registers the agents of one other kind (``ZoneIngress``) by their document."""

    async def register(self, res: Resource, token: str | None, now: float) -> Any: ...

    async def unregister(self, session: Any) -> None: ...


class AgentRegistry:
    """Live agent sessions by node id; the xDS server admits only registered nodes."""

    def __init__(self, manager: ResourceManager, zone: str,
                 others: dict[str, Registrar] | None = None) -> None:
        self.manager = manager
        self.zone = zone
        self.others = others or {}
        self.sessions: dict[str, AgentSession] = {}
        self._lock = asyncio.Lock()
        self._on_register: list[Callable[[AgentSession], None]] = []

    def on_register(self, listener: Callable[[AgentSession], None]) -> None:
        """Call ``listener`` with each new session once it is registered, before its first
        update is streamed: what it puts on ``session.updates`` follows ``Registered``."""
        self._on_register.append(listener)

    async def authenticate(self, token: str | None, mesh: str, dataplane: DataplaneSpec) -> Claims:
        try:
            await self.manager.get("Mesh", mesh)
        except NotFound:
            raise Refused(grpc.StatusCode.NOT_FOUND, f"mesh {mesh!r} does not exist") from None
        try:
            claims = await TokenAuthority(self.manager, DATAPLANE, mesh).verify(token)
        except TokenRejected as exc:
            raise Refused(grpc.StatusCode.UNAUTHENTICATED, exc.detail) from None
        services = {ib.service for ib in dataplane.networking.inbound}
        if services and claims.subject not in services:
            raise Refused(grpc.StatusCode.PERMISSION_DENIED,
                          f"the token is for service {claims.subject!r}, but the Dataplane "
                          f"offers {sorted(services)}")
        return claims

    async def register(self, doc: Any, token: str | None, now: float
                       ) -> AgentSession | OtherSession:
        try:
            res = parse_document(doc, self.manager.registry)
        except InvalidResource as exc:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, exc.detail) from None
        if res.type in self.others:
            other: OtherSession = await self.others[res.type].register(res, token, now)
            return other
        if res.type != "Dataplane" or not isinstance(res.spec, DataplaneSpec):
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, "expected a Dataplane document")
        claims = await self.authenticate(token, res.mesh, res.spec)
        session = AgentSession(res.mesh, res.name, claims, res, now)
        async with self._lock:
            held = self.sessions.get(session.node_id)
            if held is not None and held.claims.token_id != claims.token_id:
                raise Refused(grpc.StatusCode.ALREADY_EXISTS,
                              f"dataplane {res.name!r} is already connected with another "
                              "identity; stop the other agent or pick another name")
            self.sessions[session.node_id] = session
            await self.manager.apply(res)
        for listener in self._on_register:
            listener(session)
        return session

    async def unregister(self, session: AgentSession | OtherSession) -> None:
        if not isinstance(session, AgentSession):
            await self.others[session.kind].unregister(session)
            return
        async with self._lock:
            if self.sessions.get(session.node_id) is not session:
                return  # a newer session of the same agent took over
            del self.sessions[session.node_id]
            with contextlib.suppress(NotFound):
                await self.manager.delete("Dataplane", session.name, session.mesh)


class AgentService(agent_pb2_grpc.AgentServicer):
    def __init__(self, registry: AgentRegistry, ca: ZoneCa) -> None:
        self._registry = registry
        self._ca = ca

    async def SignCertificate(self, request: agent_pb2.SignRequest,
                              context: grpc.aio.ServicerContext) -> agent_pb2.SignResponse:
        session = self._registry.sessions.get(f"{request.mesh}.{request.dataplane}")
        if session is None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                "the dataplane is not registered: open a Session first")
            raise AssertionError("unreachable")
        claims = await self._verify(context, session)
        if claims.token_id != session.claims.token_id:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                "the token is not the one the dataplane registered with")
        if len(request.csr_pem) > MAX_CSR:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the CSR is too large")
        try:
            csr = x509.load_pem_x509_csr(request.csr_pem)
            signed = await self._ca.sign(session.mesh, session.spec, csr)
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"invalid CSR: {exc}")
            raise AssertionError("unreachable") from exc
        except CaUnavailable as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, exc.detail)
            raise AssertionError("unreachable") from exc
        session.cert_expiry = signed.not_after
        response = agent_pb2.SignResponse(certificate_chain_pem=signed.chain_pem,
                                          trust_bundle_pem=signed.trust_bundle_pem)
        response.expires_at.FromDatetime(signed.not_after)
        return response

    async def _verify(self, context: grpc.aio.ServicerContext, session: AgentSession) -> Claims:
        try:
            return await TokenAuthority(self._registry.manager, DATAPLANE,
                                        session.mesh).verify(bearer(context))
        except TokenRejected as exc:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, exc.detail)
            raise AssertionError("unreachable") from exc

    async def Session(self, request_iterator: AsyncIterator[agent_pb2.AgentMessage],
                      context: grpc.aio.ServicerContext) -> AsyncIterator[CpMessage]:
        loop = asyncio.get_running_loop()
        first = await anext(request_iterator, None)
        if first is None or not first.register_dataplane_json:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "the first message must register a Dataplane")
            return
        try:
            doc = json.loads(first.register_dataplane_json)
            session = await self._registry.register(doc, bearer(context), loop.time())
        except json.JSONDecodeError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"invalid JSON: {exc}")
            return
        except Refused as exc:
            log.warning("agent refused: %s", exc.detail)
            await context.abort(exc.code, exc.detail)
            return
        except GossamerError as exc:
            await context.abort(grpc.StatusCode.INTERNAL, exc.detail)
            return
        log.info("dataplane %s registered in mesh %s", session.name, session.mesh)
        try:
            yield agent_pb2.ControlPlaneMessage(registered=agent_pb2.Registered(
                mesh=session.mesh, name=session.name, zone=self._registry.zone,
                node_id=session.node_id))
            reader = asyncio.create_task(_drain(request_iterator))
            try:
                while not reader.done():
                    try:
                        update = await asyncio.wait_for(session.updates.get(), HEARTBEAT)
                    except TimeoutError:
                        update = agent_pb2.ControlPlaneMessage(heartbeat=agent_pb2.Heartbeat())
                    yield update
            finally:
                reader.cancel()
        finally:
            await self._registry.unregister(session)
            log.info("dataplane %s unregistered", session.name)


async def _drain(messages: AsyncIterator[agent_pb2.AgentMessage]) -> None:
    """Read the agent's heartbeats until its side of the stream ends."""
    async for _ in messages:
        pass
