"""The sidecars of a zone CP: who is registered, with what, and who hears about it.

(The gRPC service that feeds this registry is ``zone_cp.agent_service``. Its parts:
the token check, ``auth`` (``zone_cp.agent_auth``); trust bundles and renewals for the
zone CA, ``trust`` (``zone_cp.trust_push``); what a restarted CP does with a previous
run's resources, ``run`` (``zone_cp.leftovers``).)

A sidecar agent opens one ``Session`` for its lifetime. Its token is checked first
(``auth.admit``), before a byte of the registration is read. Its first message
registers the Dataplane: the document is validated and must be what the token vouches
for (``zone_cp.admission``: its mesh, every inbound's service, the bound name and tags,
no reserved labels), the token may have at most ``max_dataplanes`` live Dataplanes, a
name already held by a live agent with a different token is refused, and so is the name
of a stored Dataplane no agent registered (applied by hand or synced): an agent cannot
take one over, nor delete it by disconnecting. A stored agent-registered Dataplane with
no live session blocks no one. Every refusal is a ``GossamerError`` naming its gRPC
status. The Dataplane is stored (with the label ``AGENT_LABEL``) when its agent
registers and removed when the agent's stream ends while the control plane keeps running
(``zone_cp.leftovers`` says what happens when the CP itself stops or restarts).

Other kinds of agents register through the same Session with their own document: a
``ZoneIngress`` goes to the ``Registrar`` given for that kind (``zone_cp.ingresses``),
which authenticates it and keeps its sessions apart from the Dataplanes'. They take no
part in what follows.

A sidecar reports its certificate status on the Session (``reported``). Whoever needs
to follow the sidecars listens with ``on_change``: the one way this registry notifies,
synchronously, on each registration (before the session's first update is streamed),
report and departure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any, Protocol

from gossamer.errors import AlreadyExists, Forbidden, InvalidResource, NotFound
from gossamer.model.base import Resource
from gossamer.model.dataplane import DataplaneSpec
from gossamer.model.labels import AGENT_LABEL, AGENT_VALUE, ORIGIN_LABEL
from gossamer.model.registry import parse_document
from gossamer.resources import ResourceManager
from gossamer.tokens import DATAPLANE, Claims
from zone_cp.admission import check_binding, check_capacity, check_labels
from zone_cp.agent_auth import AgentAuth
from zone_cp.agent_session import AgentSession, Change, OtherSession, sidecar_node_id
from zone_cp.cert_status import StatusReport
from zone_cp.leftovers import (
    LEFTOVER_GRACE,
    Lifetime,
    keep_then_expire,
    leftover_keys,
    ours,
    registered_by_agent,
    stamped,
)
from zone_cp.trust_push import SidecarTrust

log = logging.getLogger(__name__)

# The registration document is bounded well below the gRPC message limit: the largest
# Dataplane the model admits with realistic tags (64 inbounds, 1,024 outbounds) is ~200 KiB.
MAX_REGISTRATION = 1024 * 1024


class Registrar(Lifetime, Protocol):
    """Registers the agents of one other kind (``ZoneIngress``) by their document, with
    the same lifetime rules as the Dataplanes' (``zone_cp.leftovers``).
    ``token_kind`` is the kind of token its agents present; ``verify`` checks one."""

    token_kind: str

    async def verify(self, token: str | None) -> Claims: ...

    async def register(self, res: Resource, token: str | None, now: float) -> Any: ...

    async def unregister(self, session: Any) -> None: ...


class AgentRegistry:
    """Live agent sessions by node id; the xDS server admits only registered nodes."""

    def __init__(self, manager: ResourceManager, zone: str,
                 others: dict[str, Registrar] | None = None, *,
                 signer: bool = True, replica: str = "") -> None:
        """``replica``: this zone CP replica's stable id (zone CP replicas on one store,
        ``zone_cp.leftovers``), "" without replicas."""
        self.manager = manager
        self.zone = zone
        self.replica = replica
        self.others = others or {}
        self.auth = AgentAuth(manager, self.others, signer=signer)
        self.sessions: dict[str, AgentSession] = {}
        self._lock = asyncio.Lock()
        self._listeners: list[Callable[[Change, AgentSession], None]] = []
        self._stopping = False
        # The first listener: a new session gets its mesh's trust bundle before any
        # other update (the DNS table).
        self.trust = SidecarTrust(self)

    def on_change(self, listener: Callable[[Change, AgentSession], None]) -> None:
        """Call ``listener`` (synchronously; it must not raise) whenever a sidecar
        registers (before its first update is streamed: what the listener puts on
        ``session.updates`` follows ``Registered``), reports its status, or goes.
        Listeners are called in the order they were added."""
        self._listeners.append(listener)

    def _notify(self, change: Change, session: AgentSession) -> None:
        for listener in self._listeners:
            listener(change, session)

    def sessions_of(self, mesh: str) -> list[AgentSession]:
        """The live sidecar sessions of ``mesh``, by name."""
        return sorted((s for s in self.sessions.values() if s.mesh == mesh),
                      key=lambda s: s.name)

    def reported(self, session: AgentSession, report: StatusReport) -> None:
        """Record what a sidecar reported on its Session."""
        session.report = report
        if self.sessions.get(session.node_id) is session:
            self._notify(Change.REPORTED, session)

    # -- registration ------------------------------------------------------------------

    async def register(self, doc: Any, token: str | None, now: float, *,
                       claims: Claims | None = None) -> AgentSession | OtherSession:
        """Register the agent whose first message is ``doc`` (a document, or its JSON).
        ``claims``: its token, when the caller already ``admit``ted it."""
        if claims is None:
            claims = await self.auth.admit(token)
        res = self._parse(doc)
        if res.type in self.others:
            other: OtherSession = await self.others[res.type].register(res, token, now)
            return other
        if res.type != "Dataplane" or not isinstance(res.spec, DataplaneSpec):
            raise InvalidResource("expected a Dataplane document")
        if claims.kind != DATAPLANE:
            raise Forbidden(f"a Dataplane registers with a dataplane token, not a "
                            f"{claims.kind} token: issue one with `gossamer token dataplane`")
        check_labels(res.labels)
        check_binding(claims, res.mesh, res.name, res.spec)
        res = replace(res, labels=stamped({**res.labels, AGENT_LABEL: AGENT_VALUE},
                                          self.replica))
        session = AgentSession(res.mesh, res.name, claims, res, now)
        async with self._lock:
            await self._store(session)
        self._notify(Change.REGISTERED, session)
        return session

    async def _store(self, session: AgentSession) -> None:
        """Hold the session's name and store its Dataplane (under the lock)."""
        held = self.sessions.get(session.node_id)
        if held is not None and held.claims.token_id != session.claims.token_id:
            raise AlreadyExists(f"dataplane {session.name!r} is already connected with "
                                "another identity; stop the other agent or pick another "
                                "name")
        self._check_capacity(session)
        await self._check_not_foreign(session.mesh, session.name)
        self.sessions[session.node_id] = session
        try:
            await self.manager.apply(session.dataplane)
        except BaseException:
            # Not stored, so not registered: nothing may hold the name or count for
            # a CA rotation. A session this one was taking over is put back.
            if held is None:
                del self.sessions[session.node_id]
            else:
                self.sessions[session.node_id] = held
            raise

    def _parse(self, doc: Any) -> Resource:
        """The registration document (JSON text or already decoded) as a resource;
        ``InvalidResource`` if it is none."""
        try:
            if isinstance(doc, str | bytes):
                if len(doc) > MAX_REGISTRATION:
                    raise InvalidResource(f"the registration is larger than "
                                          f"{MAX_REGISTRATION} bytes")
                doc = json.loads(doc)
            return parse_document(doc, self.manager.registry)
        except json.JSONDecodeError as exc:
            raise InvalidResource(f"invalid JSON: {exc}") from None

    def _check_capacity(self, session: AgentSession) -> None:
        """The token's ``max_dataplanes``, counting its other live sessions (its own
        node's, which this one replaces, does not count)."""
        live = sum(1 for s in self.sessions.values()
                   if s.claims.token_id == session.claims.token_id
                   and s.node_id != session.node_id)
        check_capacity(session.claims, live)

    async def _check_not_foreign(self, mesh: str, name: str) -> None:
        """Refuse the name of a stored Dataplane no agent registered here (applied by
        hand, or synced): registering would overwrite it, disconnecting delete it."""
        try:
            stored = await self.manager.get("Dataplane", name, mesh)
        except NotFound:
            return
        if not registered_by_agent(stored) or ORIGIN_LABEL in stored.labels:
            raise AlreadyExists(
                f"dataplane {name!r} of mesh {mesh!r} exists and was not registered by an "
                "agent (applied by hand or synced): an agent cannot take it over; pick "
                "another name or delete it first")

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

    # -- the control plane's own lifetime (zone_cp.leftovers) ----------------------------

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
                             lambda r: sidecar_node_id(r.mesh, r.name), self._owned)

    async def expire(self, keys: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """Remove the Dataplanes ``keys`` names whose agent has still not registered;
        which were removed."""
        removed = []
        async with self._lock:
            for mesh, name in keys:
                if sidecar_node_id(mesh, name) in self.sessions or self._stopping:
                    continue
                with contextlib.suppress(NotFound):
                    if self._owned(await self.manager.get("Dataplane", name, mesh)):
                        await self.manager.delete("Dataplane", name, mesh)
                        removed.append((mesh, name))
        if removed:
            log.info("removed %d dataplanes whose agents did not come back: %s",
                     len(removed), ", ".join(sidecar_node_id(m, n) for m, n in removed))
        return removed

    def _owned(self, res: Resource) -> bool:
        return registered_by_agent(res) and ours(res, self.replica)

    async def restore(self) -> list[str]:
        """Store again the Dataplane of every live session whose Dataplane is gone (the
        leader took this replica for dead: ``zone_cp.leftovers.DeadReplicas``), and the
        other kinds' likewise; the node ids restored."""
        restored = []
        async with self._lock:
            for session in list(self.sessions.values()):
                try:
                    await self.manager.get("Dataplane", session.name, session.mesh)
                except NotFound:
                    await self.manager.apply(session.dataplane)
                    restored.append(session.node_id)
        for other in self.others.values():
            restored += await other.restore()
        if restored:
            log.warning("stored again %d sidecars removed while this replica was taken "
                        "for dead: %s", len(restored), ", ".join(restored))
        return restored

    async def run(self, grace: float = LEFTOVER_GRACE) -> None:
        """After a start: expire the previous run's leftovers of every kind after
        ``grace`` (``keep_then_expire``). Runs until cancelled, like the control plane's
        other parts (its end would end the CP)."""
        await keep_then_expire({"Dataplane": self, **self.others}, grace)
        await asyncio.Event().wait()
