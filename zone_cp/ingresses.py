"""Zone ingresses on the zone CP: their sessions, their tokens, their available services.

An ingress agent opens the same agent ``Session`` a sidecar does, but its first message
carries a ``ZoneIngress`` document instead of a Dataplane (``AgentRegistry`` hands it
here). It authenticates with a **zone token** that has the ``ingress`` scope and names
this zone, verified with the ``TokenTrust`` the global publishes (``verify_with_trust``):
the zone holds no zone-token signing key. A standalone zone refuses ingresses: it has no
global, so no zone tokens and no other zones to carry traffic from.

While its session lives the ingress is stored as a local ``ZoneIngress`` (no labels; the
zone sync publishes it to the global, which passes it to the other zones) with
``zone`` set to this zone and ``availableServices`` computed here, never taken from the
agent: per mesh, each local service the ingress can route to, with its protocol tag,
instance count and ports (each instance's ``servicePort``, else its inbound port, with
that inbound's protocol). ``run`` recomputes them on every ``MeshState`` change; identical applies
are no-ops, so only a real change reaches the store and the sync. The session's end
removes the ZoneIngress, unless it ends because the control plane stops (``stopping``):
the ingress's Envoy keeps passing traffic, so other zones must keep their route. After a
start, a ZoneIngress left by the previous run stays until its agent registers again or
``AgentRegistry.run``'s grace passes (``zone_cp.leftovers``: ``leftovers``, ``expire``).
Every local ZoneIngress (one without an origin label) is the registry's: the zone CP
owns its contents.

The ingress's Envoy is admitted to the ADS by node id ``ingress:<name>`` (a Dataplane's
is ``dp:<mesh>:<name>``, so the two cannot collide) and gets ``generate(node_id)``:
``zone_ingress.envoy`` over this zone's local services.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import jwt

from authority.token_authority import verify_with_trust
from gossamer.errors import (
    AlreadyExists,
    FailedPrecondition,
    Forbidden,
    GossamerError,
    InvalidResource,
    NotFound,
    Unauthorized,
    Unavailable,
)
from gossamer.model.base import Resource
from gossamer.model.labels import ORIGIN_LABEL, PROTOCOL_TAG, SERVICE_TAG
from gossamer.model.zoneegress import ZoneEgressSpec
from gossamer.model.zoneingress import AvailableService, ServicePort, ZoneIngressSpec
from gossamer.resources import ResourceManager
from gossamer.tokens import DATAPLANE, ZONE, Claims, TokenRejected
from proxy.context import Service
from proxy.envoy.ports import local_ports
from proxy.envoy.resources import ProxyResources
from zone_cp.admission import reserved_labels
from zone_cp.leftovers import leftover_keys, ours, stamped
from zone_cp.mailbox import Mailbox
from zone_cp.mesh_state import MeshState
from zone_ingress.envoy import IngressContext, generate_ingress, routable

log = logging.getLogger(__name__)

KIND = "ZoneIngress"
INGRESS_SCOPE = "ingress"
NODE_PREFIX = "ingress:"
_INVALID = frozenset({"missing", "malformed", "expired", "revoked", "bad-signature"})


def node_id(name: str) -> str:
    return f"{NODE_PREFIX}{name}"


def available_services(services: Mapping[str, Mapping[str, Service]]
                       ) -> list[AvailableService]:
    """What an ingress offers: per mesh, each service with instances it can route to, and
    the ports those instances serve (so other zones listen on each of them)."""
    out = []
    for mesh in sorted(services):
        for name, svc in sorted(services[mesh].items()):
            instances = routable(svc)
            if instances:
                ports = [ServicePort(port=p.port, protocol=p.protocol)
                         for p in local_ports(instances, svc.protocol)]
                out.append(AvailableService(mesh=mesh, instances=len(instances), tags={
                    SERVICE_TAG: name, PROTOCOL_TAG: svc.protocol}, ports=ports))
    return out


def _unverified_kind(token: str | None) -> str:
    """The ``kind`` claim, unverified: only to word a refusal."""
    try:
        payload = jwt.decode(token or "", options={"verify_signature": False})
    except jwt.PyJWTError:
        return ""
    return str(payload.get("kind", ""))


def refusal(exc: TokenRejected, token: str | None, zone: str,
            scope: str = INGRESS_SCOPE) -> Forbidden | Unauthorized:
    """A rejected ingress (or egress: ``scope``) token as the agent should hear it: what
    is wrong, what to do (``Unauthorized`` for a token that is no valid token,
    ``Forbidden`` for one that does not admit the agent here)."""
    how = f"issue one at the global with `gossamer token zone --zone {zone} --scope {scope}`"
    if exc.reason in ("unknown-key", "wrong-kind") and _unverified_kind(token) == DATAPLANE:
        return Forbidden(f"a zone {scope} authenticates with a zone token that has the "
                         f"'{scope}' scope, not a dataplane token: {how}")
    if exc.reason == "wrong-scope":
        return Forbidden(f"the zone token lacks the '{scope}' scope: {how}")
    if exc.reason == "wrong-subject":
        return Forbidden(f"the zone token is not for this zone ({zone!r}): {exc.detail}")
    kind = (Unauthorized if exc.reason in _INVALID or exc.reason == "unknown-key"
            else Forbidden)
    return kind(f"the zone {scope}'s token was refused: {exc.detail}")


@dataclass
class IngressSession:
    """A live ingress agent. ``mesh`` is empty: an ingress serves every mesh."""

    name: str
    claims: Claims
    ingress: Resource
    connected_at: float
    kind: str = KIND
    mesh: str = ""
    updates: Mailbox = field(default_factory=Mailbox)

    @property
    def node_id(self) -> str:
        return node_id(self.name)

    @property
    def spec(self) -> ZoneIngressSpec:
        if not isinstance(self.ingress.spec, ZoneIngressSpec):
            raise TypeError("an ingress session holds a ZoneIngress")
        return self.ingress.spec


class IngressRegistry:
    """Live ingress sessions by node id, and the ZoneIngress each one keeps stored.
    (``zone_cp.egresses`` is the same registry for the zone egress: the class
    attributes and the methods marked so are what it changes.)"""

    token_kind = ZONE  # what its agents present (``AgentAuth.admit`` dispatches on it)
    kind = KIND
    scope = INGRESS_SCOPE
    node_prefix = NODE_PREFIX
    what = "zone ingress"
    short = "ingress"
    standalone = ("a zone ingress carries traffic from other zones, and a standalone zone "
                  "has none (nor the zone tokens an ingress authenticates with)")

    def __init__(self, manager: ResourceManager, state: MeshState, zone: str, *,
                 federated: bool,
                 generate: Callable[[IngressContext], ProxyResources] = generate_ingress,
                 replica: str = "") -> None:
        """``replica``: this zone CP replica's stable id (``zone_cp.leftovers``)."""
        self.manager = manager
        self.zone = zone
        self.replica = replica
        self.federated = federated
        self.sessions: dict[str, IngressSession] = {}
        self._state = state
        self._generate = generate
        self._lock = asyncio.Lock()
        self._dirty = asyncio.Event()
        self._stopping = False

    # -- authentication -----------------------------------------------------------------

    def node_id(self, name: str) -> str:
        return f"{self.node_prefix}{name}"

    async def verify(self, token: str | None) -> Claims:
        if not self.federated:
            raise Forbidden(f"zone {self.zone!r} is standalone: {self.standalone}; federate "
                            "the zone with `gossamer zone run --global ...` to run an "
                            f"{self.short}")
        try:
            await self.manager.get("TokenTrust", ZONE)
        except NotFound:
            raise Unavailable(f"zone {self.zone!r} has not received the zone token keys "
                              "from the global yet; retry once it is connected") from None
        try:
            return await verify_with_trust(self.manager, token, ZONE, subject=self.zone,
                                           scope=self.scope)
        except TokenRejected as exc:
            raise refusal(exc, token, self.zone, self.scope) from None

    async def admit(self, node: str, token: str | None) -> IngressSession:
        """Admit the ingress's Envoy to ADS: its agent's session and the same token."""
        session = self.sessions.get(node)
        if session is None:
            raise FailedPrecondition(
                f"node {node!r} is not registered by a Gossamer {self.short} agent")
        claims = await self.verify(token)
        if claims.token_id != session.claims.token_id:
            raise Forbidden(f"the token is not the one the {self.short} registered with")
        return session

    # -- sessions -----------------------------------------------------------------------

    def _stored_spec(self, spec: object) -> ZoneIngressSpec | ZoneEgressSpec:
        """The spec to store for a registration (egress: its own)."""
        if not isinstance(spec, ZoneIngressSpec):
            raise InvalidResource(f"expected a {self.kind} document")
        return spec.model_copy(update={"zone": self.zone, "available_services": []})

    def _session(self, name: str, claims: Claims, stored: Resource,
                 now: float) -> IngressSession:
        return IngressSession(name, claims, stored, now)

    async def register(self, res: Resource, token: str | None, now: float) -> IngressSession:
        spec = self._stored_spec(res.spec)
        zone = getattr(res.spec, "zone", None)
        if zone not in (None, self.zone):
            raise InvalidResource(f"the {self.kind} names zone {zone!r}, but this "
                                  f"control plane is zone {self.zone!r}")
        claims = await self.verify(token)
        # Reserved labels are the zone CP's to set (zone and origin would stop the sync).
        labels = stamped({k: v for k, v in res.labels.items()
                          if k not in reserved_labels(res.labels)}, self.replica)
        stored = Resource(type=self.kind, name=res.name, labels=labels, spec=spec)
        session = self._session(res.name, claims, stored, now)
        async with self._lock:
            held = self.sessions.get(session.node_id)
            if held is not None and held.claims.token_id != claims.token_id:
                raise AlreadyExists(f"{self.what} {res.name!r} is already connected with "
                                    f"another token; stop the other {self.short} or pick "
                                    "another --name")
            await self._check_not_synced(res.name)
            self.sessions[session.node_id] = session
            try:
                await self._store(session)
            except BaseException:
                # Not stored, so not registered: the name stays free, and ``run`` must
                # not store this ingress later. A session it took over is put back.
                if held is None:
                    del self.sessions[session.node_id]
                else:
                    self.sessions[session.node_id] = held
                raise
        log.info("%s %s registered (%s:%d)", self.what, res.name, spec.networking.address,
                 spec.networking.port)
        return session

    async def _check_not_synced(self, name: str) -> None:
        with contextlib.suppress(NotFound):
            current = await self.manager.get(self.kind, name)
            if ORIGIN_LABEL in current.labels:
                raise AlreadyExists(f"{name!r} is the name of another zone's {self.short} "
                                    "here; pick another --name")

    async def unregister(self, session: IngressSession) -> None:
        async with self._lock:
            if self.sessions.get(session.node_id) is not session:
                return  # a newer session of the same ingress took over
            del self.sessions[session.node_id]
            if self._stopping:  # the CP's own stop: the ingress serves on, keep its route
                return
            with contextlib.suppress(NotFound):
                await self.manager.delete(self.kind, session.name)
        log.info("%s %s unregistered", self.what, session.name)

    # -- the control plane's own lifetime (zone_cp.leftovers) --------------------------

    def stopping(self) -> None:
        """Sessions that end from now on leave their ZoneIngress stored."""
        self._stopping = True

    async def leftovers(self) -> list[tuple[str, str]]:
        """("", name) of each local ZoneIngress stored with no live session."""
        page = await self.manager.list(self.kind)
        return leftover_keys(page.items, self.sessions.keys(), lambda r: self.node_id(r.name),
                             lambda r: ours(r, self.replica))

    async def expire(self, keys: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """Remove the ZoneIngresses ``keys`` names whose agent has still not registered
        (nor a synced one taken the name since); which were removed."""
        removed = []
        async with self._lock:
            for mesh, name in keys:
                if self.node_id(name) in self.sessions or self._stopping:
                    continue
                with contextlib.suppress(NotFound):
                    current = await self.manager.get(self.kind, name)
                    if ORIGIN_LABEL not in current.labels and ours(current, self.replica):
                        await self.manager.delete(self.kind, name)
                        removed.append((mesh, name))
        for _, name in removed:
            log.info("%s %s removed: its agent did not come back", self.what, name)
        return removed

    async def restore(self) -> list[str]:
        """Store again the ZoneIngress of every live session whose resource is gone (this
        replica was taken for dead: ``zone_cp.leftovers.DeadReplicas``)."""
        restored = []
        async with self._lock:
            for session in list(self.sessions.values()):
                try:
                    await self.manager.get(KIND, session.name)
                except NotFound:
                    await self._store(session)
                    restored.append(session.node_id)
        return restored

    # -- available services -------------------------------------------------------------

    def _services(self) -> dict[str, dict[str, Service]]:
        return {m.name: self._state.services(m.name) for m in self._state.of_kind("Mesh")}

    async def _store(self, session: IngressSession) -> None:
        """Store the session's resource as it is now (egress: as registered)."""
        spec = session.spec.model_copy(update={
            "available_services": available_services(self._services())})
        await self.manager.apply(Resource(type=KIND, name=session.name,
                                          labels=dict(session.ingress.labels), spec=spec))

    async def run(self) -> None:
        """Keep every live ingress's ``availableServices`` current, on state changes."""
        unlisten = self._state.listen(lambda _: self._dirty.set())
        try:
            while True:
                await self._dirty.wait()
                self._dirty.clear()
                async with self._lock:
                    for session in list(self.sessions.values()):
                        try:
                            await self._store(session)
                        except GossamerError as exc:  # the next change tries again
                            log.warning("cannot update %s %s: %s", self.what,
                                        session.name, exc.detail)
        finally:
            unlisten()

    # -- Envoy resources ----------------------------------------------------------------

    def context(self, node: str) -> IngressContext | None:
        """The ingress's generator input (egress: its own)."""
        session = self.sessions.get(node)
        if session is None:
            return None
        net = session.spec.networking
        return IngressContext(name=session.name, zone=self.zone, address=net.address,
                              port=net.port, services=self._services())

    def generate(self, node: str) -> ProxyResources | None:
        """The ingress's Envoy resources now, or None once its session is gone."""
        ctx = self.context(node)
        return None if ctx is None else self._generate(ctx)
