"""Envoy's delta ADS on the zone CP, through the same engine as the zone sync.

A sidecar's Envoy connects with the node id its agent registered (``dp:<mesh>:<name>``) and
the dataplane token as metadata. Each stream gets its own ``Engine``; its desired state is
the proxy's generated resources, which the zone's ``zone_cp.fleet.Fleet`` regenerates
when a change affects them (only those proxies, in coalesced rounds) — the engine then
sends only resources whose bytes changed, so an endpoint change reaches the callers as
one EDS resource each. The last
generated config and the ACK/NACK outcome are kept per proxy for ``inspect``.

A zone ingress's Envoy (node ``ingress:<name>``, registered by an ingress agent in
``zone_cp.ingresses``) is admitted with its zone token and gets the ingress's resources
(``IngressRegistry.generate``) instead of a sidecar's, through the same engine; so is a
zone egress's (node ``egress:<name>``, ``zone_cp.egresses``).

Either stream lives no longer than the token that admitted it: it holds the token
(``zone_cp.token_expiry``) and ends with UNAUTHENTICATED when the token expires or its
revocation is stored, like the agent's Session; Envoy then reconnects and is admitted
only with a valid token of a registered agent.

What one dataplane token can make this server hold is bounded: a node has one ADS stream
(a newer one ends the older with ABORTED), a token at most its ``max_dataplanes`` streams
(RESOURCE_EXHAUSTED), a sidecar's stream ends with its agent's session (FAILED_PRECONDITION),
and a node's insight is dropped once it has neither a stream nor a session, so a token
cycling through names cannot pile up generated configs. ``ADS_BOUNDS`` is sized for one
sidecar, not a zone.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc

from gossamer.coalesce import Coalesced
from gossamer.errors import (
    FailedPrecondition,
    Forbidden,
    GossamerError,
    ResourceExhausted,
    Unauthorized,
)
from gossamer.model.base import Resource
from gossamer.tokens import Claims, TokenRejected
from proxy.context import ProxyContext
from proxy.envoy import PieceCache
from proxy.envoy.resources import (
    ProxyResources,
)
from sync.bounds import Bounds
from sync.deliveries import Deliveries
from sync.engine import Engine
from sync.errors import SyncError
from sync.observed import Observed
from sync.outcomes import Outcome
from sync.stream import NO_HEARTBEATS, abort_status, publish
from zone_cp.agent_session import AgentSession, Change, same_document, sidecar_node_id
from zone_cp.agents import AgentRegistry
from zone_cp.fleet import Fleet
from zone_cp.grpc_edge import bearer, status_code
from zone_cp.ingresses import IngressRegistry
from zone_cp.mesh_dns import VipView, vip_outbounds
from zone_cp.mesh_state import MeshState
from zone_cp.token_expiry import TokenLifetimes
from zone_cp.xds_resources import TYPE_URLS, Entries, ProxyInsight, desired_entries

log = logging.getLogger(__name__)

# Envoy subscribes to these only; anything else is refused (sync/bounds.py). Sized for one
# sidecar, not a zone: an Envoy of a 10,000-service mesh subscribes to ~10,000 EDS names
# (``<service>__p<port>``, SNI-like ``outbound:...`` names, well under 256 characters),
# and it sends one ACK per response, so a few per type wait at most.
ADS_BOUNDS = Bounds(types=frozenset(TYPE_URLS.values()), max_names=20_000,
                    max_name_length=256, max_queued=64)


# A zone ingress's resources cover every service of the zone: rebuilt at most this often
# (seconds) however many slices a batch of changes arrives in, like the fleet's rounds.
INGRESS_INTERVAL = 0.05


@dataclass(slots=True)
class _Stream:
    """One live sidecar ADS stream: the token that admitted it, and why it was ended
    from here (a status and a detail), once it was."""

    token_id: str
    task: asyncio.Future[None] | None = None
    ended: tuple[grpc.StatusCode, str] | None = None

    def end(self, code: grpc.StatusCode, detail: str) -> None:
        if self.ended is None:
            self.ended = (code, detail)
        if self.task is not None:
            self.task.cancel()


class AdsServer(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):
    def __init__(self, state: MeshState, agents: AgentRegistry,
                 generate: Callable[[ProxyContext], ProxyResources],
                 ingresses: IngressRegistry | None = None, *,
                 lifetimes: TokenLifetimes, vips: VipView,
                 cache: PieceCache | None = None,
                 egresses: IngressRegistry | None = None) -> None:
        self._state = state
        self._lifetimes = lifetimes
        self._agents = agents
        self._generate = generate
        self._ingresses = ingresses
        self._egresses = egresses  # zone_cp.egresses: served like an ingress
        self._vips = vips  # shared with the DNS publisher: one computation per generation
        self.insights: dict[str, ProxyInsight] = {}
        self._streams: dict[str, _Stream] = {}  # the live sidecar streams, by node id
        self._ids = itertools.count(1)
        # Every connected sidecar, regenerated only when a change affects it.
        self.fleet = Fleet(state, vips, cache or PieceCache())
        # Push → ACK latency and NACKs of every stream, for /metrics (zone_cp.xds_metrics).
        self.deliveries = Deliveries()
        agents.on_change(self._on_agent_change)
        state.listen(self._on_state_change)

    def _on_agent_change(self, change: Change, session: AgentSession) -> None:
        """A sidecar's agent went: its ADS stream ends (Envoy is admitted again once the
        agent registers again), and with no stream its insight goes too."""
        if change is not Change.GONE:
            return
        stream = self._streams.get(session.node_id)
        if stream is not None:  # its ``finally`` drops the insight
            stream.end(grpc.StatusCode.FAILED_PRECONDITION,
                       f"the agent session of node {session.node_id!r} ended")
        else:
            self.insights.pop(session.node_id, None)

    def _claim_stream(self, node_id: str, claims: Claims) -> _Stream:
        """Hold the stream slot of ``node_id``: one per node (an older stream is ended),
        at most ``max_dataplanes`` per token."""
        others = sum(1 for n, s in self._streams.items()
                     if s.token_id == claims.token_id and n != node_id)
        if others >= claims.max_dataplanes:
            raise ResourceExhausted(
                f"the token has {others} ADS streams open; it admits at most "
                f"{claims.max_dataplanes} (max_dataplanes)")
        old = self._streams.get(node_id)
        if old is not None:
            old.end(grpc.StatusCode.ABORTED,
                    f"replaced by a newer ADS stream of node {node_id!r}")
        stream = self._streams[node_id] = _Stream(claims.token_id)
        return stream

    def _release_stream(self, node_id: str, stream: _Stream) -> None:
        """``stream`` ended: free its slot; with no session left, forget the node."""
        if self._streams.get(node_id) is stream:
            del self._streams[node_id]
        if node_id not in self._streams and node_id not in self._agents.sessions:
            self.insights.pop(node_id, None)

    async def StreamAggregatedResources(self, request_iterator: AsyncIterator[Any],
                                        context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED,
                            "Gossamer serves delta xDS only: set api_type DELTA_GRPC")

    async def DeltaAggregatedResources(self, request_iterator: AsyncIterator[Any],
                                       context: grpc.aio.ServicerContext) -> None:
        try:  # the token before anything the peer sends (checked against its node below)
            await self._agents.auth.admit(bearer(context))
        except GossamerError as exc:
            await context.abort(status_code(exc), exc.detail)
            return
        first = await context.read()
        if first is grpc.aio.EOF:
            return
        node_id = first.node.id
        for gateways, label in ((self._ingresses, "ingress"), (self._egresses, "egress")):
            if gateways is not None and node_id in gateways.sessions:
                await self._serve_ingress(gateways, first, context, label)
                return
        try:
            session, claims = await self._admit_sidecar(node_id, bearer(context))
            stream = self._claim_stream(node_id, claims)
        except (FailedPrecondition, Unauthorized, Forbidden, ResourceExhausted) as exc:
            await context.abort(status_code(exc), exc.detail)
            return
        insight = self.insights.setdefault(node_id, ProxyInsight(node_id,
                                                                 vip_cidr=self._vips.cidr))
        insight.connected = True
        sid = f"{node_id}#{next(self._ids)}"
        engine = Engine(bounds=ADS_BOUNDS)
        try:
            await self._while_admitted(claims, context, publish(
                engine, sid, _observed(context, insight, first, self.deliveries, sid),
                lambda wake: self._follow(engine, self._held_once(session), insight, wake),
                NO_HEARTBEATS), stream)  # Envoy has gRPC keepalive, not ours
        except SyncError as exc:  # the proxy went away, or broke the protocol
            log.info("proxy %s stream ended: %s", node_id, exc.detail)
            if (code := abort_status(exc)) is not None:  # a bound, a broken protocol
                await context.abort(code, exc.detail)
        finally:
            self._release_stream(node_id, stream)
            self.deliveries.forget(sid)
            insight.connected = node_id in self._streams  # a newer stream took over

    async def _admit_sidecar(self, node_id: str,
                             token: str | None) -> tuple[AgentSession, Claims]:
        """The live session of the sidecar ``node_id`` names and the claims of ``token``,
        which must be the token that sidecar registered with."""
        session = self._agents.sessions.get(node_id)
        if session is None:
            if ":" not in node_id:  # an Envoy an older agent started: ``<mesh>.<name>``
                raise FailedPrecondition(
                    f"node {node_id!r} has the old <mesh>.<name> form: restart the sidecar "
                    "so its agent writes the node id this control plane registered")
            raise FailedPrecondition(f"node {node_id!r} is not registered by a Gossamer "
                                     "agent")
        try:
            claims = await self._agents.auth.authority(session.mesh).verify(token)
        except TokenRejected as exc:
            raise Unauthorized(exc.detail) from None
        if claims.token_id != session.claims.token_id:
            raise Forbidden("the token is not the one the dataplane registered with")
        if self._agents.sessions.get(node_id) is not session:  # it went while we checked
            raise FailedPrecondition(f"the agent session of node {node_id!r} ended")
        # The same token, verified again: hold the session's claims, not a second copy.
        return session, (session.claims if claims == session.claims else claims)

    async def _while_admitted(self, claims: Claims, context: grpc.aio.ServicerContext,
                              stream: Coroutine[Any, Any, None],
                              slot: _Stream | None = None) -> None:
        """Run ``stream`` until it ends, or until ``claims``' token expires or is revoked
        (then end it and answer UNAUTHENTICATED, saying why), or ``slot`` is ended (then
        answer with the status it was ended with)."""
        hold = self._lifetimes.hold(claims)
        task = asyncio.ensure_future(stream)
        hold.on_end(lambda _: task.cancel())
        if slot is not None:
            slot.task = task
            if slot.ended is not None:
                task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            why = hold.withdrawn
            answer = ((grpc.StatusCode.UNAUTHENTICATED, why.detail) if why is not None
                      else slot.ended if slot is not None else None)
            current = asyncio.current_task()
            if answer is None or context.cancelled() or (current and current.cancelling()):
                raise  # the stream itself is being cancelled: nothing to tell
            await context.abort(*answer)
        finally:
            hold.release()
            task.cancel()

    def _held_once(self, session: AgentSession, stored: Resource | None = None) -> Resource:
        """The Dataplane ``session`` registered, held once: the state's copy (``stored``,
        by default what the state holds now) when it is the same document, which the
        session then keeps instead of its own. A zone CP of thousands of sidecars would
        otherwise hold each Dataplane twice, the registered one and the one its store
        view decoded (about 4 KiB each). The fleet does the same for its member."""
        registered = session.dataplane
        if stored is None:
            stored = self._state.get("Dataplane", registered.name, registered.mesh)
        if stored is None or not same_document(stored, registered):
            return registered  # not stored yet, or another version: keep the registered one
        session.dataplane = stored
        return stored

    def _on_state_change(self, res: Resource | None) -> None:
        """A Dataplane the state took in after its sidecar registered: held once."""
        if res is not None and res.type == "Dataplane":
            session = self._agents.sessions.get(sidecar_node_id(res.mesh, res.name))
            if session is not None and session.dataplane is not res:
                self._held_once(session, res)

    def _follow(self, engine: Engine, dataplane: Resource, insight: ProxyInsight,
                wake: Callable[[], None]) -> Callable[[], None]:
        """Load the registered ``dataplane`` now, then again whenever the fleet finds a
        change that affects it; returns the function that stops following."""

        def deliver(generated: ProxyResources, entries: Entries) -> None:
            for type_url, resources in entries.items():
                engine.set_desired(type_url, resources)
            insight.generated = generated
            wake()

        return self.fleet.join(insight.node_id, dataplane, deliver)

    def generated_for(self, dataplane: Resource) -> ProxyResources:
        """The Envoy resources of ``dataplane``'s sidecar from the current state."""
        extra = vip_outbounds(self._vips.of(dataplane.mesh), dataplane)
        return self._generate(self._state.context_for(dataplane, extra))

    # -- the zone ingress ---------------------------------------------------------------

    async def _serve_ingress(self, ingresses: IngressRegistry, first: Any,
                             context: grpc.aio.ServicerContext,
                             label: str = "ingress") -> None:
        node_id = first.node.id
        try:
            session = await ingresses.admit(node_id, bearer(context))
        except GossamerError as exc:
            await context.abort(status_code(exc), exc.detail)
            return
        insight = self.insights.setdefault(node_id, ProxyInsight(node_id))
        insight.connected = True
        engine = Engine(bounds=ADS_BOUNDS)
        sid = f"{node_id}#{next(self._ids)}"

        def load() -> None:
            generated = ingresses.generate(node_id)
            if generated is not None:  # None once the session ended: keep the last config
                _set_desired(engine, generated)
                insight.generated = generated

        try:
            await self._while_admitted(session.claims, context, publish(
                engine, sid, _observed(context, insight, first, self.deliveries, sid,
                                       label),
                lambda wake: self._on_changes(load, wake), NO_HEARTBEATS))
        except SyncError as exc:
            log.info("%s %s stream ended: %s", label, node_id, exc.detail)
            if (code := abort_status(exc)) is not None:
                await context.abort(code, exc.detail)
        finally:
            insight.connected = False
            self.deliveries.forget(sid)
            if node_id not in ingresses.sessions:  # nothing left to inspect
                self.insights.pop(node_id, None)

    def _on_changes(self, load: Callable[[], None], wake: Callable[[], None], *,
                    first: Callable[[], None] | None = None) -> Callable[[], None]:
        """``first`` (by default ``load``) now, then ``load`` and ``wake`` after state
        changes, at most every ``INGRESS_INTERVAL``; returns the unlisten function."""

        def run() -> None:
            load()
            wake()

        (first or load)()
        return self._state.listen(Coalesced(run, min_interval=INGRESS_INTERVAL))


def _observed(context: grpc.aio.ServicerContext, insight: ProxyInsight, first: Any,
              deliveries: Deliveries, sid: str, label: str = "sidecar") -> Observed:
    """The ADS stream (``first`` already read from it), counting for ``insight`` and
    timing each response until its ACK or NACK in ``deliveries`` under ``label``."""

    def observe(message: Any, outcome: Outcome) -> None:
        insight.observe(message, outcome)
        deliveries.observe(sid, label, message, outcome, time.monotonic())

    return Observed(context, observe, publishing=True, first=first)


def _set_desired(engine: Engine, generated: ProxyResources) -> None:
    for type_url, resources in desired_entries(generated).items():
        engine.set_desired(type_url, resources)
