"""A stream that counts the delta messages crossing it: the edge of ``sync.outcomes``.

``Observed`` wraps any ``MessageStream`` (a gRPC context, the zone's client call) and
calls ``observe(message, outcome)`` for each delta message it reads or writes that has an
outcome (``outcome_of``); heartbeats and initial requests have none. The global's sync
server observes each zone's streams for its insights, the zone CP's ADS server each
Envoy's stream.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from envoy.service.discovery.v3 import discovery_pb2

from sync.outcomes import Outcome
from sync.stream import HEARTBEAT, MessageStream

Observer = Callable[[Any, Outcome], None]


def outcome_of(message: Any, *, publishing: bool) -> Outcome | None:
    """The outcome of one message crossing a stream whose local end is the publisher
    (``publishing``) or the subscriber.

    Publishing: our responses are ``SENT``, the peer's answers ``ACKED``/``NACKED``.
    Subscribing: the peer's responses are ``RECEIVED`` and our NACKs of them
    ``REFUSED``; our own ACKs are not counted, so ``acked``/``nacked`` always mean the
    peer's answers.
    """
    if message is None or getattr(message, "type_url", HEARTBEAT) == HEARTBEAT:
        return None
    if isinstance(message, discovery_pb2.DeltaDiscoveryResponse):
        return Outcome.SENT if publishing else Outcome.RECEIVED
    if isinstance(message, discovery_pb2.DeltaDiscoveryRequest) and message.response_nonce:
        nack = bool(message.error_detail.code)
        if publishing:
            return Outcome.NACKED if nack else Outcome.ACKED
        return Outcome.REFUSED if nack else None
    return None


class Observed:
    """A ``MessageStream`` that reports each message's outcome to ``observe``.

    ``first`` is a message already read from ``inner`` (a server reads the first request
    to route the stream): the first ``read`` returns it again, unobserved.
    """

    def __init__(self, inner: MessageStream, observe: Observer, *, publishing: bool,
                 first: Any = None) -> None:
        self._inner = inner
        self._observe = observe
        self._publishing = publishing
        self._first = first

    async def read(self) -> Any:
        if self._first is not None:
            message, self._first = self._first, None
            return message
        message = await self._inner.read()
        self._report(message)
        return message

    async def write(self, message: Any) -> None:
        await self._inner.write(message)
        self._report(message)

    def _report(self, message: Any) -> None:
        outcome = outcome_of(message, publishing=self._publishing)
        if outcome is not None:
            self._observe(message, outcome)
