"""The delta engine: the server side of incremental xDS, without any I/O.

One ``Engine`` publishes resources to many subscribers. It serves every sync link in
Gossamer (DESIGN §4): the global publishing to zones (``GlobalToZone``), a zone publishing
to the global (``ZoneToGlobal``, where the zone is the delta server although it dialled),
and a zone CP publishing to its Envoys (delta ADS). On the other end of each link sits a
``sync.client_state.Mirror``.

Theory of operation
-------------------

The engine holds, per type URL, the *desired* snapshot: name → ``Entry`` (version and
payload), replaced wholesale with ``set_desired`` or edited with ``put``/``remove`` as store
events arrive. Per subscriber session it holds one ``TypeState`` per type the subscriber
asked for (see ``sync/subscription.py``: acked versions, the response in flight, holds on
refused resources).

The shell around the engine (a gRPC stream handler) does only this::

    engine.connect(sid)                         # a stream opened; sid unique per stream
    for each request from the stream:           # parsed by sync.wire at the edge
        send(engine.on_request(sid, request, now))
    on a change to the desired state:           # set_desired / put / remove
        for sid in engine.subscribers: send(engine.pending(sid, now))
    at engine.next_deadline(sid), if not None:  # a refused resource's backoff ends
        send(engine.pending(sid, now))
    engine.disconnect(sid)                      # the stream ended, however it ended

Every call is synchronous and returns the responses to write, in order. ``now`` is the
caller's monotonic clock in seconds; nothing here reads a clock, sleeps or does I/O.

The first request of a session for a type is its initial request: its
``initial_versions`` become what the subscriber is known to hold, so a reconnecting
subscriber receives only the difference (changed or new resources, and removals of the
ones it holds that are no longer desired). The engine keeps nothing across sessions: a
new stream trusts the subscriber's report, not what an old stream may or may not have
delivered. The first response for each type is sent even when it is empty, so a
subscriber can tell "in sync" from "not answered yet".

What one subscriber can make the engine hold is bounded (``sync/bounds.py``): the type
URLs it may subscribe to, how many, and the names per type.

Cost: each ``pending`` call reconciles the whole desired snapshot of each subscribed type
against the subscriber's acked versions (a dict walk, linear in the number of resources),
except for a type known to be in sync at the current snapshot generation
(``TypeState.quiet_at``: it had nothing to send at it, or its ACKed response was the
whole difference at it, with nothing held and no subscription change since): an ACK of
one type does not walk the other three, nor its own snapshot again.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from sync.bounds import Bounds, check_request, check_subscription
from sync.errors import LocalProtocolError
from sync.messages import Entry, Request, Response
from sync.outcomes import Counts
from sync.subscription import Backoff, Delta, Limits, TypeState

NonceFactory = Callable[[], str]


def counter_nonces(prefix: str = "") -> NonceFactory:
    """Nonces ``1``, ``2``, ... (with a prefix): unique for one engine's lifetime."""
    numbers: Iterator[int] = itertools.count(1)
    return lambda: f"{prefix}{next(numbers)}"


@dataclass
class _Session:
    types: dict[str, TypeState] = field(default_factory=dict)
    node_id: str = ""


class Engine:
    """Publishes versioned snapshots per type to subscribers over delta xDS."""

    def __init__(self, *, nonces: NonceFactory | None = None, backoff: Backoff | None = None,
                 limits: Limits | None = None, bounds: Bounds | None = None) -> None:
        self._nonces = nonces or counter_nonces()
        self.bounds = bounds or Bounds()
        self._backoff = backoff or Backoff()
        self._limits = limits or Limits()
        self._desired: dict[str, dict[str, Entry]] = {}
        self._generation: dict[str, int] = {}
        self._sessions: dict[str, _Session] = {}

    # -- the desired state ------------------------------------------------------------

    def set_desired(self, type_url: str, resources: Mapping[str, Entry]) -> None:
        """Replace the whole snapshot of one type."""
        self._desired[type_url] = dict(resources)
        self._bump(type_url)

    def put(self, type_url: str, name: str, entry: Entry) -> None:
        """Create or update one resource."""
        self._desired.setdefault(type_url, {})[name] = entry
        self._bump(type_url)

    def remove(self, type_url: str, name: str) -> None:
        """Delete one resource (a no-op if it does not exist)."""
        if self._desired.get(type_url, {}).pop(name, None) is not None:
            self._bump(type_url)

    def desired(self, type_url: str) -> Mapping[str, Entry]:
        return MappingProxyType(self._desired.get(type_url, {}))

    def _bump(self, type_url: str) -> None:
        self._generation[type_url] = self._generation.get(type_url, 0) + 1

    # -- sessions ---------------------------------------------------------------------

    @property
    def subscribers(self) -> list[str]:
        return list(self._sessions)

    def connect(self, subscriber_id: str) -> None:
        """Open a session; its state starts empty until its initial requests arrive."""
        if subscriber_id in self._sessions:
            raise LocalProtocolError(f"subscriber {subscriber_id!r} is already connected; "
                                     "use one id per stream")
        self._sessions[subscriber_id] = _Session()

    def disconnect(self, subscriber_id: str) -> None:
        """Forget a session and whatever it had in flight (a no-op if unknown)."""
        self._sessions.pop(subscriber_id, None)

    def on_request(self, subscriber_id: str, request: Request, now: float) -> list[Response]:
        """Take one request (initial, ACK, NACK or subscription change); answer with what is due.

        An ACK or NACK whose nonce is not the response in flight for its type is stale
        (it answers a response that a later one superseded, or another session's) and only
        its subscription changes count.

        A request past one of the session's ``Bounds`` raises ``RemoteProtocolError``
        (``PeerLimitExceeded`` for a count) before any state grows: the shell ends the
        stream with its status.
        """
        session = self._session(subscriber_id)
        check_request(self.bounds, request, session.types.keys())
        session.node_id = request.node_id or session.node_id
        state = session.types.get(request.type_url)
        if state is None:
            session.types[request.type_url] = TypeState(request)
        else:
            state.resubscribe(request.subscribe, request.unsubscribe)
            check_subscription(self.bounds, request.type_url, len(state.names))
            if request.response_nonce:
                state.settle(request, now, self._backoff)
        return self.pending(subscriber_id, now)

    def pending(self, subscriber_id: str, now: float) -> list[Response]:
        """The responses due now: at most one per type, for types with nothing in flight."""
        session = self._session(subscriber_id)
        out = []
        for type_url, state in session.types.items():
            delta = state.next_delta(self._desired.get(type_url, {}), now, self._limits,
                                     self._generation.get(type_url, 0))
            if delta is not None:
                out.append(self._send(type_url, state, delta))
        return out

    def next_deadline(self, subscriber_id: str) -> float | None:
        """The earliest time at which ``pending`` may have a held-back resource to retry."""
        session = self._session(subscriber_id)
        times = [t for type_url, state in session.types.items()
                 if (t := state.next_deadline(self._desired.get(type_url, {}))) is not None]
        return min(times, default=None)

    def _send(self, type_url: str, state: TypeState, delta: Delta) -> Response:
        nonce = self._nonces()
        state.mark_sent(nonce, delta)
        return Response(type_url=type_url, nonce=nonce, resources=dict(delta.updated),
                        removed=frozenset(delta.removed),
                        system_version=str(self._generation.get(type_url, 0)))

    def _session(self, subscriber_id: str) -> _Session:
        session = self._sessions.get(subscriber_id)
        if session is None:
            raise LocalProtocolError(f"subscriber {subscriber_id!r} is not connected")
        return session

    # -- introspection (insights, tests) ----------------------------------------------

    def acked(self, subscriber_id: str, type_url: str) -> Mapping[str, str]:
        """name → version the subscriber has acknowledged for one type."""
        state = self._session(subscriber_id).types.get(type_url)
        return MappingProxyType(state.acked if state else {})

    def held(self, subscriber_id: str, type_url: str) -> Mapping[str, str]:
        """name → refused version, for resources currently held back from the subscriber."""
        state = self._session(subscriber_id).types.get(type_url)
        return {n: h.version for n, h in state.holds.items()} if state else {}

    def counters(self, subscriber_id: str) -> Mapping[str, Counts]:
        """type URL → responses sent, and ACKs and NACKs settled (stale ones are not
        counted), in this session: ``sync.outcomes.Counts``, the type every link counts
        with."""
        return {t: s.counters for t, s in self._session(subscriber_id).types.items()}

    def node_id(self, subscriber_id: str) -> str:
        return self._session(subscriber_id).node_id
