"""The agents of a zone CP: who is registered, with what, and what they reported.

(The gRPC service that feeds this registry is ``zone_cp.agent_service``.)

A sidecar agent opens one ``Session`` for its lifetime. Its token is checked first
(``admit``), before a byte of the registration is read: a dataplane token is verified
with the keys of the mesh it claims (an unknown mesh is refused exactly like a forged
token, so an unauthenticated caller learns nothing about meshes). Its first message
registers the Dataplane: the document is validated and must be what the token vouches
for (``zone_cp.admission``: its mesh, every inbound's service, the bound name and tags,
no reserved labels), the token may have at most ``max_dataplanes`` live Dataplanes, a
name already held by a live agent with a different token is refused, and so is the name
of a stored Dataplane no agent registered (applied by hand or synced): an agent cannot
take one over, nor delete it by disconnecting. A stored agent-registered Dataplane with
no live session blocks no one. ``SignCertificate`` signs a CSR for a registered
Dataplane only, with the identity its token vouches for (``zone_cp.ca.workload_uris``).

Lifetime of a registered Dataplane: it is stored (with the label ``AGENT_LABEL``) when
its agent registers and removed when the agent's stream ends while the control plane
keeps running. It is *not* removed when the stream ends because the control plane
itself stops (``stopping``): the Envoys keep serving meanwhile, and deleting their
Dataplanes would reach the global and every other zone as a lost route. After a start,
``run`` gives the Dataplanes a previous run left behind (``leftovers``) a grace period
for their agents to register again (which replaces them, as any re-registration does)
and then removes those still without a session: a sidecar that died with the CP does
not linger. Only agent-registered, zone-local Dataplanes are touched; one applied by
hand or synced from elsewhere is not the registry's. The same holds for the other kinds'
registrars (``Registrar``).

Other kinds of agents register through the same Session with their own document: a
``ZoneIngress`` goes to the ``Registrar`` given for that kind (``zone_cp.ingresses``),
which authenticates it and keeps its sessions apart from the Dataplanes'. They take no
part in what follows.

Certificates: a sidecar reports its status (``AgentStatus``: its certificate chain and
the digest of the trust bundle its Envoy serves) on the Session; each session keeps the
last report, parsed (``zone_cp.cert_status``), and what ``SignCertificate`` last signed
for it. A report that is too large or does not parse is logged and dropped; the stream
goes on. For the mesh CA's controller, the registry can push a trust bundle to every
sidecar of a mesh (``set_trust_bundle``; later sessions get it right after
``Registered``, and ``SignCertificate`` answers with it), ask sidecars to renew
(``renew``), list them (``sessions_of``), and tell whoever listens when a session
registers, reports or goes (``changed``, ``on_change``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import enum
import json
import logging
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import grpc
from cryptography import x509

from authority.token_authority import TokenAuthority
from gossamer.errors import GossamerError, InvalidResource, NotFound
from gossamer.model.base import Resource
from gossamer.model.dataplane import DataplaneSpec
from gossamer.model.labels import AGENT_LABEL, AGENT_VALUE, ORIGIN_LABEL
from gossamer.model.registry import parse_document
from gossamer.pki.certs import bundle_digest
from gossamer.resources import ResourceManager
from gossamer.tokens import DATAPLANE, Claims, TokenRejected, peek
from sync.v1 import agent_pb2
from zone_cp.admission import (
    INVALID_ARGUMENT,
    RESOURCE_EXHAUSTED,
    Denied,
    check_binding,
    check_capacity,
    check_labels,
)
from zone_cp.cert_status import (
    CertificateInfo,
    Health,
    SignedRecord,
    StatusReport,
)
from zone_cp.mailbox import Mailbox

log = logging.getLogger(__name__)

MAX_CSR = 16 * 1024
HEARTBEAT = 5.0
CpMessage = agent_pb2.ControlPlaneMessage
# How long a restarted zone CP keeps a previous run's Dataplanes and ZoneIngresses for
# their agents to register again (agents reconnect within 45 s, see docs/decisions.md).
LEFTOVER_GRACE = 60.0
# The registration document is bounded well below the gRPC message limit: the largest
# Dataplane the model admits with realistic tags (64 inbounds, 1,024 outbounds) is ~200 KiB.
MAX_REGISTRATION = 1024 * 1024
# The one answer to a token no mesh here trusts: the same for an unknown mesh, an unknown
# signing key and a bad signature, so an unauthenticated caller cannot probe for meshes.
UNTRUSTED = ("token rejected: it was not issued for a mesh of this control plane "
             "(unknown mesh, signing key or signature)")
_UNTRUSTED_REASONS = frozenset({"unknown-key", "bad-signature", "wrong-mesh"})


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class AgentSession:
    """One live sidecar: its Dataplane, what it reported, what was signed for it.
    ``updates`` is what the Session stream sends it next (bounded: ``Mailbox``)."""

    mesh: str
    name: str
    claims: Claims
    dataplane: Resource
    connected_at: float
    report: StatusReport | None = None
    signed: SignedRecord | None = None
    signatures: int = 0
    renewals_asked: int = 0
    updates: Mailbox = field(default_factory=Mailbox)

    @property
    def node_id(self) -> str:
        return f"{self.mesh}.{self.name}"

    @property
    def certificate(self) -> CertificateInfo | None:
        """The certificate the sidecar last reported it serves."""
        return self.report.certificate if self.report else None

    @property
    def certificate_chain(self) -> Sequence[x509.Certificate]:
        """That certificate and the CAs after it, leaf first (empty before a report)."""
        return self.report.certificate.chain if self.report else ()

    @property
    def trust_bundle_digest(self) -> str:
        """The digest of the trust bundle the sidecar serves ("" before a report)."""
        return self.report.trust_bundle_digest if self.report else ""

    def issued_at(self) -> dt.datetime | None:
        """When the reported certificate was signed, if this zone CP signed it."""
        cert = self.certificate
        if cert is not None and self.signed is not None and (
                self.signed.certificate.serial == cert.serial):
            return self.signed.signed_at
        return None

    def health(self, now: dt.datetime) -> Health | None:
        cert = self.certificate
        return None if cert is None else cert.health(now, self.issued_at())

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
    claims: Claims
    updates: Mailbox

    @property
    def node_id(self) -> str: ...


class Change(enum.StrEnum):
    """What happened to a session, for ``AgentRegistry.on_change`` listeners."""

    REGISTERED = "registered"
    REPORTED = "reported"
    GONE = "gone"


class Registrar(Protocol):
    """Registers the agents of one other kind (``ZoneIngress``) by their document, with
    the same lifetime rules as the Dataplanes' (see the module's docstring).
    ``token_kind`` is the kind of token its agents present; ``verify`` checks one."""

    token_kind: str

    async def verify(self, token: str | None) -> Claims: ...

    async def register(self, res: Resource, token: str | None, now: float) -> Any: ...

    async def unregister(self, session: Any) -> None: ...

    def stopping(self) -> None: ...

    async def leftovers(self) -> list[tuple[str, str]]: ...

    async def expire(self, keys: Iterable[tuple[str, str]]) -> list[tuple[str, str]]: ...


def leftover_keys(stored: Iterable[Resource], live: Collection[str],
                  node_id: Callable[[Resource], str],
                  owned: Callable[[Resource], bool]) -> list[tuple[str, str]]:
    """The (mesh, name) of each stored resource ``owned`` by a registry (zone-local and
    agent-registered) whose node id has no live session, sorted."""
    return sorted((r.mesh, r.name) for r in stored
                  if ORIGIN_LABEL not in r.labels and owned(r) and node_id(r) not in live)


def registered_by_agent(res: Resource) -> bool:
    return res.labels.get(AGENT_LABEL) == AGENT_VALUE


_DENIED_CODES = {RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
                 INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT}


def refused(denied: Denied) -> Refused:
    """An admission refusal (``zone_cp.admission``) as the agent hears it."""
    return Refused(_DENIED_CODES.get(denied.code, grpc.StatusCode.PERMISSION_DENIED),
                   denied.detail)


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
        self._on_change: list[Callable[[Change, AgentSession], None]] = []
        self._bundles: dict[str, tuple[bytes, str]] = {}  # mesh -> (PEM, digest)
        self._stopping = False
        # Set on every registration, report and departure; its one consumer clears it.
        self.changed = asyncio.Event()

    def on_register(self, listener: Callable[[AgentSession], None]) -> None:
        """Call ``listener`` with each new session once it is registered, before its first
        update is streamed: what it puts on ``session.updates`` follows ``Registered``."""
        self._on_register.append(listener)

    def on_change(self, listener: Callable[[Change, AgentSession], None]) -> None:
        """Call ``listener`` (synchronously; it must not raise) whenever a sidecar
        registers, reports its status, or goes. Every listener sees every change, unlike
        ``changed``, which suits a single consumer that recomputes from ``sessions_of``."""
        self._on_change.append(listener)

    def _notify(self, change: Change, session: AgentSession) -> None:
        self.changed.set()
        for listener in self._on_change:
            listener(change, session)

    # -- for the mesh CA's controller ------------------------------------------------------

    def sessions_of(self, mesh: str) -> list[AgentSession]:
        """The live sidecar sessions of ``mesh``, by name."""
        return sorted((s for s in self.sessions.values() if s.mesh == mesh),
                      key=lambda s: s.name)

    sidecars_of = sessions_of

    def set_trust_bundle(self, mesh: str, pem: bytes) -> None:
        """Make ``pem`` the trust bundle of ``mesh``'s sidecars: sent now to every live
        sidecar session of the mesh, to each later one right after ``Registered``, and
        with every certificate ``SignCertificate`` signs. Nothing is sent when the bundle
        holds the same roots as before. Raises ``ValueError`` if ``pem`` is not a
        non-empty PEM bundle (the caller's fault)."""
        digest = bundle_digest(pem)
        if not digest:
            raise ValueError("an empty trust bundle")
        held = self._bundles.get(mesh)
        if held is not None and held[1] == digest:
            return
        self._bundles[mesh] = (pem, digest)
        sessions = self.sessions_of(mesh)
        for session in sessions:
            self._send_bundle(session)
        log.info("trust bundle %s… of mesh %s sent to %d sidecars", digest[:12], mesh,
                 len(sessions))

    def resend_trust_bundle(self, mesh: str,
                            predicate: Callable[[AgentSession], bool]) -> int:
        """Send the mesh's current bundle again to the sessions ``predicate`` selects (a
        sidecar that reports another digest missed or refused a push); how many."""
        chosen = [s for s in self.sessions_of(mesh) if predicate(s)]
        for session in chosen:
            self._send_bundle(session)
        return len(chosen)

    def trust_bundle(self, mesh: str) -> tuple[bytes, str] | None:
        """The bundle last set for ``mesh`` and its digest, or None."""
        return self._bundles.get(mesh)

    def _send_bundle(self, session: AgentSession) -> None:
        held = self._bundles.get(session.mesh)
        if held is not None:
            session.updates.put_nowait(CpMessage(trust_bundle=agent_pb2.TrustBundle(
                pem=held[0])))

    def renew(self, mesh: str, predicate: Callable[[AgentSession], bool] | None = None) -> int:
        """Ask the sidecars of ``mesh`` that ``predicate`` selects (all without one) for a
        new certificate now; how many were asked. Agents coalesce requests that reach
        them before they send their CSR, so asking twice in a row costs one signature."""
        asked = [s for s in self.sessions_of(mesh) if predicate is None or predicate(s)]
        for session in asked:
            session.renewals_asked += 1
            session.updates.put_nowait(CpMessage(renew=agent_pb2.Renew()))
        return len(asked)

    def reported(self, session: AgentSession, report: StatusReport) -> None:
        """Record what a sidecar reported on its Session."""
        session.report = report
        if self.sessions.get(session.node_id) is session:
            self._notify(Change.REPORTED, session)

    async def admit(self, token: str | None) -> Claims:
        """Verify the bearer's token before anything else of its request is read: a
        dataplane token with the keys of the mesh it claims, another kind's (a zone
        token) by the registrar that takes it. Refused with UNAUTHENTICATED otherwise."""
        try:
            kind, mesh = peek(token)
        except TokenRejected as exc:
            raise Refused(grpc.StatusCode.UNAUTHENTICATED, exc.detail) from None
        for other in self.others.values():
            if other.token_kind == kind:
                return await other.verify(token)
        if kind != DATAPLANE:
            raise Refused(grpc.StatusCode.UNAUTHENTICATED,
                          f"a {kind or 'kind-less'} token does not admit an agent here; a "
                          "sidecar presents a dataplane token")
        return await self.verify_dataplane(token, mesh)

    async def verify_dataplane(self, token: str | None, mesh: str) -> Claims:
        """A dataplane token of ``mesh`` (the mesh it claims), or UNAUTHENTICATED with
        one answer (``UNTRUSTED``) whether the mesh is unknown or the token forged."""
        try:
            if not mesh:
                raise NotFound("a dataplane token without a mesh")
            await self.manager.get("Mesh", mesh)
            return await TokenAuthority(self.manager, DATAPLANE, mesh).verify(token)
        except NotFound:
            raise Refused(grpc.StatusCode.UNAUTHENTICATED, UNTRUSTED) from None
        except TokenRejected as exc:
            detail = UNTRUSTED if exc.reason in _UNTRUSTED_REASONS else exc.detail
            raise Refused(grpc.StatusCode.UNAUTHENTICATED, detail) from None

    async def register(self, doc: Any, token: str | None, now: float, *,
                       claims: Claims | None = None) -> AgentSession | OtherSession:
        """Register the agent whose first message is ``doc`` (a document, or its JSON).
        ``claims``: its token, when the caller already ``admit``ted it."""
        if claims is None:
            claims = await self.admit(token)
        res = self._parse(doc)
        if res.type in self.others:
            other: OtherSession = await self.others[res.type].register(res, token, now)
            return other
        if res.type != "Dataplane" or not isinstance(res.spec, DataplaneSpec):
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, "expected a Dataplane document")
        if claims.kind != DATAPLANE:
            raise Refused(grpc.StatusCode.PERMISSION_DENIED,
                          f"a Dataplane registers with a dataplane token, not a {claims.kind} "
                          "token: issue one with `gossamer token dataplane`")
        try:
            check_labels(res.labels)
            check_binding(claims, res.mesh, res.name, res.spec)
        except Denied as exc:
            raise refused(exc) from None
        res = replace(res, labels={**res.labels, AGENT_LABEL: AGENT_VALUE})
        session = AgentSession(res.mesh, res.name, claims, res, now)
        async with self._lock:
            held = self.sessions.get(session.node_id)
            if held is not None and held.claims.token_id != claims.token_id:
                raise Refused(grpc.StatusCode.ALREADY_EXISTS,
                              f"dataplane {res.name!r} is already connected with another "
                              "identity; stop the other agent or pick another name")
            self._check_capacity(session)
            await self._check_not_foreign(res.mesh, res.name)
            self.sessions[session.node_id] = session
            self._send_bundle(session)  # at once: a set_trust_bundle now would send it too
            try:
                await self.manager.apply(res)
            except BaseException:
                # Not stored, so not registered: nothing may hold the name or count for
                # a CA rotation. A session this one was taking over is put back.
                if held is None:
                    del self.sessions[session.node_id]
                else:
                    self.sessions[session.node_id] = held
                raise
        for listener in self._on_register:
            listener(session)
        self._notify(Change.REGISTERED, session)
        return session

    def _parse(self, doc: Any) -> Resource:
        """The registration document (JSON text or already decoded) as a resource."""
        try:
            if isinstance(doc, str | bytes):
                if len(doc) > MAX_REGISTRATION:
                    raise InvalidResource(f"the registration is larger than "
                                          f"{MAX_REGISTRATION} bytes")
                doc = json.loads(doc)
            return parse_document(doc, self.manager.registry)
        except json.JSONDecodeError as exc:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, f"invalid JSON: {exc}") from None
        except InvalidResource as exc:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, exc.detail) from None

    def _check_capacity(self, session: AgentSession) -> None:
        """The token's ``max_dataplanes``, counting its other live sessions (its own
        node's, which this one replaces, does not count)."""
        live = sum(1 for s in self.sessions.values()
                   if s.claims.token_id == session.claims.token_id
                   and s.node_id != session.node_id)
        try:
            check_capacity(session.claims, live)
        except Denied as exc:
            raise refused(exc) from None

    async def _check_not_foreign(self, mesh: str, name: str) -> None:
        """Refuse the name of a stored Dataplane no agent registered here (applied by
        hand, or synced): registering would overwrite it, disconnecting delete it."""
        try:
            stored = await self.manager.get("Dataplane", name, mesh)
        except NotFound:
            return
        if not registered_by_agent(stored) or ORIGIN_LABEL in stored.labels:
            raise Refused(grpc.StatusCode.ALREADY_EXISTS,
                          f"dataplane {name!r} of mesh {mesh!r} exists and was not registered "
                          "by an agent (applied by hand or synced): an agent cannot take it "
                          "over; pick another name or delete it first")

    async def unregister(self, session: AgentSession | OtherSession) -> None:
        if not isinstance(session, AgentSession):
            await self.others[session.kind].unregister(session)
            return
        async with self._lock:
            if self.sessions.get(session.node_id) is not session:
                return  # a newer session of the same agent took over
            del self.sessions[session.node_id]
            if not self._stopping:  # the CP's own stop: the sidecar lives on, so does its DP
                with contextlib.suppress(NotFound):
                    await self.manager.delete("Dataplane", session.name, session.mesh)
        self._notify(Change.GONE, session)

    # -- the control plane's own lifetime ---------------------------------------------------

    def stopping(self) -> None:
        """The control plane is stopping: sessions that end from now on (here and in the
        other kinds' registrars) leave their resources stored for the next run."""
        self._stopping = True
        for other in self.others.values():
            other.stopping()

    async def leftovers(self) -> list[tuple[str, str]]:
        """The (mesh, name) of stored agent-registered Dataplanes with no live session."""
        page = await self.manager.list("Dataplane", labels={AGENT_LABEL: AGENT_VALUE})
        return leftover_keys(page.items, self.sessions.keys(),
                             lambda r: f"{r.mesh}.{r.name}", registered_by_agent)

    async def expire(self, keys: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """Remove the Dataplanes ``keys`` names whose agent has still not registered;
        which were removed."""
        removed = []
        async with self._lock:
            for mesh, name in keys:
                if f"{mesh}.{name}" in self.sessions or self._stopping:
                    continue
                with contextlib.suppress(NotFound):
                    if registered_by_agent(await self.manager.get("Dataplane", name, mesh)):
                        await self.manager.delete("Dataplane", name, mesh)
                        removed.append((mesh, name))
        if removed:
            log.info("removed %d dataplanes whose agents did not come back: %s",
                     len(removed), ", ".join(f"{m}.{n}" for m, n in removed))
        return removed

    async def run(self, grace: float = LEFTOVER_GRACE) -> None:
        """After a start: wait ``grace`` seconds for the agents of the resources a previous
        run left stored, then remove those whose agent did not come back. Runs until
        cancelled, like the control plane's other parts (its end would end the CP)."""
        found: dict[str, list[tuple[str, str]]] = {"Dataplane": await self.leftovers()}
        for kind, other in self.others.items():
            found[kind] = await other.leftovers()
        if any(found.values()):
            log.info("keeping %d resources of the previous run for %gs while their agents "
                     "come back", sum(map(len, found.values())), grace)
            await asyncio.sleep(grace)
            try:
                await self.expire(found.pop("Dataplane"))
                for kind, keys in found.items():
                    await self.others[kind].expire(keys)
            except GossamerError as exc:  # a store failure: the next run expires them
                log.warning("cannot remove the previous run's leftovers: %s", exc.detail)
        await asyncio.Event().wait()
