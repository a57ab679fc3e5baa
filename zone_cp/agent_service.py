"""The agent API's gRPC service on the zone CP: ``Session`` and ``SignCertificate``.

``Session`` reads the first message (a Dataplane or another kind's document) and
registers it with the ``AgentRegistry`` (``zone_cp.agents``), then streams what the
registry and its listeners queue for the session (``zone_cp.updates``: trust bundles,
DNS tables, Renew, converted to ``agent_pb2`` here) with a heartbeat while idle,
records the agent's status reports, and unregisters it when the stream ends, which it
does with UNAUTHENTICATED once the session's token expires or is revoked
(``zone_cp.token_expiry``), and with ABORTED once a newer Session of the same sidecar
(same token) took its place: the older stream and its token hold go at once.
``SignCertificate`` signs a registered sidecar's CSR through the zone's CA
(``zone_cp.ca``) with the identity its token vouches for; the bearer must be the token
the sidecar registered with. A zone token's bearer is a zone egress
(``zone_cp.egresses``): its CSR is signed with the egress's identity in the mesh asked.
Both check the token before anything else of the request.

This is the agent API's gRPC edge: a refusal from inside (a ``GossamerError``) is
answered with the status its ``grpc_status`` names, and protobuf goes no further in.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc
from cryptography import x509

from gossamer.errors import GossamerError, InvalidResource
from gossamer.tokens import ZONE, Claims, TokenRejected, peek
from sync.v1 import agent_pb2, agent_pb2_grpc
from zone_cp.admin_channel import ReplyPiece
from zone_cp.agent_session import AgentSession, OtherSession, sidecar_node_id, utc_now
from zone_cp.agent_wire import to_message
from zone_cp.agents import AgentRegistry
from zone_cp.ca import CaUnavailable, ZoneCa, workload_uris
from zone_cp.cert_status import (
    CertificateInfo,
    InvalidStatus,
    SignedRecord,
    parse_status,
)
from zone_cp.egresses import EgressRegistry
from zone_cp.grpc_edge import bearer, status_code
from zone_cp.token_expiry import TokenLifetimes
from zone_cp.updates import Heartbeat

log = logging.getLogger(__name__)


def peek_kind(token: str | None) -> str:
    """The token's kind, unverified: which verifier to hand it to ("" if unreadable)."""
    try:
        return peek(token)[0]
    except TokenRejected:
        return ""

MAX_CSR = 16 * 1024
HEARTBEAT = 5.0  # seconds without an update before a heartbeat is sent
CpMessage = agent_pb2.ControlPlaneMessage

class AgentService(agent_pb2_grpc.AgentServicer):
    def __init__(self, registry: AgentRegistry, ca: ZoneCa,
                 lifetimes: TokenLifetimes, egresses: EgressRegistry | None = None) -> None:
        self._registry = registry
        self._egresses = egresses
        self._ca = ca
        self._lifetimes = lifetimes
        self._streams: dict[str, AgentSession] = {}  # whose Session stream is live, by node

    def _took_over(self, session: AgentSession) -> None:
        """``session`` is a node's live Session now: wake the stream it replaced, which
        then ends (its loop sees it is no longer the registered one)."""
        older = self._streams.get(session.node_id)
        if older is not None and older is not session:
            older.updates.put_nowait(Heartbeat())
        self._streams[session.node_id] = session

    def _superseded(self, session: AgentSession | OtherSession) -> bool:
        return (isinstance(session, AgentSession)
                and self._registry.sessions.get(session.node_id) is not session)

    async def SignCertificate(self, request: agent_pb2.SignRequest,
                              context: grpc.aio.ServicerContext) -> agent_pb2.SignResponse:
        # The token first, with the keys of the mesh it claims; then the request.
        if self._egresses is not None and peek_kind(bearer(context)) == ZONE:
            return await self._sign_egress(request, context, self._egresses)
        claims = await self._verify(context)
        if request.mesh != claims.mesh:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                f"the token is for mesh {claims.mesh!r}, not {request.mesh!r}")
        session = self._registry.sessions.get(sidecar_node_id(request.mesh, request.dataplane))
        if session is None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                "the dataplane is not registered: open a Session first")
            raise AssertionError("unreachable")
        if claims.token_id != session.claims.token_id:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                "the token is not the one the dataplane registered with")
        if len(request.csr_pem) > MAX_CSR:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the CSR is too large")
        try:
            csr = x509.load_pem_x509_csr(request.csr_pem)
            signed = await self._ca.sign(session.mesh, workload_uris(
                session.mesh, session.claims.subject, session.claims.tags), csr)
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"invalid CSR: {exc}")
            raise AssertionError("unreachable") from exc
        except CaUnavailable as exc:
            await context.abort(status_code(exc), exc.detail)
            raise AssertionError("unreachable") from exc
        session.signatures += 1
        try:
            session.signed = SignedRecord(CertificateInfo.from_chain_pem(signed.chain_pem),
                                    utc_now())
        except InvalidStatus as exc:  # the CA's chain: worth a line, not the agent's call
            log.warning("the chain signed for %s is not recorded: %s", session.node_id, exc)
        # The controller's bundle when it set one: an answer must not undo a push.
        held = self._registry.trust.trust_bundle(session.mesh)
        response = agent_pb2.SignResponse(
            certificate_chain_pem=signed.chain_pem,
            trust_bundle_pem=held[0] if held is not None else signed.trust_bundle_pem)
        response.expires_at.FromDatetime(signed.not_after)
        return response

    async def _sign_egress(self, request: agent_pb2.SignRequest,
                           context: grpc.aio.ServicerContext,
                           egresses: EgressRegistry) -> agent_pb2.SignResponse:
        """A zone egress's certificate in ``request.mesh``: its zone token (egress scope)
        first, then its live session; the identity is the egress's, never the CSR's."""
        try:
            claims = await egresses.verify(bearer(context))
            _, uris = egresses.identity(request.dataplane, request.mesh, claims.token_id)
            if len(request.csr_pem) > MAX_CSR:
                raise InvalidResource("the CSR is too large")
            try:
                csr = x509.load_pem_x509_csr(request.csr_pem)
            except ValueError as exc:
                raise InvalidResource(f"invalid CSR: {exc}") from None
            signed = await self._ca.sign(request.mesh, uris, csr)
        except GossamerError as exc:
            await context.abort(status_code(exc), exc.detail)
            raise AssertionError("unreachable") from exc
        held = self._registry.trust.trust_bundle(request.mesh)
        response = agent_pb2.SignResponse(
            certificate_chain_pem=signed.chain_pem,
            trust_bundle_pem=held[0] if held is not None else signed.trust_bundle_pem)
        response.expires_at.FromDatetime(signed.not_after)
        return response

    async def _verify(self, context: grpc.aio.ServicerContext) -> Claims:
        token = bearer(context)
        try:
            _, mesh = peek(token)
            return await self._registry.auth.verify_dataplane(token, mesh)
        except TokenRejected as exc:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, exc.detail)
            raise AssertionError("unreachable") from exc
        except GossamerError as exc:
            await context.abort(status_code(exc), exc.detail)
            raise AssertionError("unreachable") from exc

    async def Session(self, request_iterator: AsyncIterator[agent_pb2.AgentMessage],
                      context: grpc.aio.ServicerContext) -> AsyncIterator[CpMessage]:
        session = await self._register(request_iterator, context)
        if session is None:
            return
        log.info("dataplane %s registered in mesh %s", session.name, session.mesh)
        if isinstance(session, AgentSession):
            self._took_over(session)
        # The session lives no longer than its token: its end wakes the loop below.
        hold = self._lifetimes.hold(session.claims)
        hold.on_end(lambda _: session.updates.put_nowait(Heartbeat()))
        try:
            yield agent_pb2.ControlPlaneMessage(registered=agent_pb2.Registered(
                mesh=session.mesh, name=session.name, zone=self._registry.zone,
                node_id=session.node_id))
            reader = asyncio.create_task(self._read(request_iterator, session))
            try:
                while not reader.done():
                    try:
                        update = await asyncio.wait_for(session.updates.get(), HEARTBEAT)
                    except TimeoutError:
                        update = Heartbeat()
                    if hold.withdrawn is not None:
                        await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                            hold.withdrawn.detail)
                    if self._superseded(session):
                        await context.abort(grpc.StatusCode.ABORTED,
                                            "replaced by a newer session of this dataplane")
                    yield to_message(update)
                if not reader.cancelled() and (failure := reader.exception()) is not None:
                    log.warning("dataplane %s: reading its session failed", session.node_id,
                                exc_info=failure)
            finally:
                reader.cancel()
        finally:
            hold.release()
            if isinstance(session, AgentSession):
                session.admin.close()
            if self._streams.get(session.node_id) is session:
                del self._streams[session.node_id]
            await self._registry.unregister(session)
            log.info("dataplane %s unregistered", session.name)

    async def _register(self, request_iterator: AsyncIterator[agent_pb2.AgentMessage],
                        context: grpc.aio.ServicerContext
                        ) -> AgentSession | OtherSession | None:
        """Admit the bearer, then register what its first message says; a refusal
        ends the call with the status it names (None: the call is over)."""
        token = bearer(context)
        try:  # the token before a byte of the registration is read
            claims = await self._registry.auth.admit(token)
        except GossamerError as exc:
            log.warning("agent refused: %s", exc.detail)
            await context.abort(status_code(exc), exc.detail)
            return None
        first = await anext(request_iterator, None)
        if first is None or not first.register_dataplane_json:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "the first message must register a Dataplane")
            return None
        try:
            return await self._registry.register(first.register_dataplane_json, token,
                                                 asyncio.get_running_loop().time(),
                                                 claims=claims)
        except GossamerError as exc:
            if exc.caller_fault:
                log.warning("agent refused: %s", exc.detail)
            await context.abort(status_code(exc), exc.detail)
            return None

    async def _read(self, messages: AsyncIterator[agent_pb2.AgentMessage],
                    session: AgentSession | OtherSession) -> None:
        """Read the agent's heartbeats and status reports until its side of the stream
        ends. Only sidecars' reports are recorded; a bad one is logged and dropped.
        A sidecar's features and Envoy admin replies go to its ``admin`` channel."""
        async for message in messages:
            if isinstance(session, AgentSession):
                self._take(session, message)
            del message  # not held while the next is awaited: a status report is KiBs

    def _take(self, session: AgentSession, message: agent_pb2.AgentMessage) -> None:
        """One message of a sidecar's agent (a heartbeat needs nothing)."""
        kind = message.WhichOneof("message")
        if kind == "features":
            session.admin.supported = message.features.envoy_admin_relay
        elif kind == "envoy_admin_reply":
            r = message.envoy_admin_reply
            session.admin.receive(ReplyPiece(r.request_id, r.chunk, r.last,
                                             r.http_status, r.truncated, r.error[:1000]))
        elif kind == "status":
            try:
                report = parse_status(message.status.certificate_chain_pem,
                                      message.status.trust_bundle_digest, utc_now())
            except InvalidStatus as exc:
                log.warning("dataplane %s sent a status that is ignored: %s",
                            session.node_id, exc)
                return
            self._registry.reported(session, report)
