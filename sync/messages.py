"""The delta protocol's messages as our own frozen dataclasses.

``sync/wire.py`` turns ``envoy.service.discovery.v3.DeltaDiscoveryRequest/Response`` into
these at the edge and back; everything inside ``sync/`` (the engine, the mirror) and its
callers sees only these types, never protobuf messages.

The engine never looks inside a resource: a ``Payload`` is the ``google.protobuf.Any``
it travels as (type URL and serialized bytes), and an ``Entry`` pairs it with its
version. A version is an opaque string; two entries are the same resource state exactly
when their versions are equal, so a producer must change the version whenever the payload
changes (``sync.codec`` uses a digest of the payload).

Messages are constructed from the wire, so a malformed one is the peer's fault and
raises ``RemoteProtocolError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sync.errors import RemoteProtocolError

WILDCARD = "*"


@dataclass(frozen=True)
class Payload:
    """A resource body as the ``Any`` it travels in: ``type_url`` and serialized ``value``."""

    type_url: str
    value: bytes


@dataclass(frozen=True)
class Entry:
    """One resource state: its ``version`` (opaque, non-empty) and its ``payload``.

    ``wire`` is not part of the state: ``sync.wire`` keeps there the name and the bytes
    that go before the payload when the entry travels as a delta response's
    ``Resource``, so an entry shared by many subscribers' snapshots is framed once.
    """

    version: str
    payload: Payload
    wire: tuple[str, bytes] | None = field(default=None, init=False, repr=False,
                                           compare=False)

    def __post_init__(self) -> None:
        if not self.version:
            raise RemoteProtocolError("a resource must have a non-empty version")


@dataclass(frozen=True)
class Nack:
    """Why a subscriber refused a response (``error_detail`` of a request).

    ``rejected`` maps the refused resource names to reasons, and then every other resource
    of the response was applied. ``None`` means the whole response was refused and nothing
    in it applied, which is what Envoy does and what a NACK without Gossamer's
    ``RejectedResources`` detail means.
    """

    message: str
    code: int = 3  # google.rpc.Code.INVALID_ARGUMENT
    rejected: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        if self.rejected is not None and not self.rejected:
            raise RemoteProtocolError("a NACK that names resources must name at least one")


@dataclass(frozen=True)
class Request:
    """A subscriber's request for one type: the first of a session, an ACK or a NACK.

    ``response_nonce`` empty: the initial request (or a pure subscription change).
    ``initial_versions``: on the initial request, what the subscriber already holds.
    ``subscribe``/``unsubscribe``: resource names, ``*`` for the wildcard; an initial
    request that subscribes to nothing is a wildcard subscription.
    """

    type_url: str
    response_nonce: str = ""
    subscribe: frozenset[str] = frozenset()
    unsubscribe: frozenset[str] = frozenset()
    initial_versions: Mapping[str, str] = field(default_factory=dict)
    error: Nack | None = None
    node_id: str = ""

    def __post_init__(self) -> None:
        if not self.type_url:
            raise RemoteProtocolError("a request must name a type_url")
        if self.error is not None and not self.response_nonce:
            raise RemoteProtocolError("a NACK must carry the nonce of the response it refuses")

    @property
    def is_ack(self) -> bool:
        return bool(self.response_nonce) and self.error is None

    @property
    def is_nack(self) -> bool:
        return self.error is not None


@dataclass(frozen=True)
class Response:
    """What the engine sends for one type: changed resources by name, and removed names."""

    type_url: str
    nonce: str
    resources: Mapping[str, Entry] = field(default_factory=dict)
    removed: frozenset[str] = frozenset()
    system_version: str = ""

    def __post_init__(self) -> None:
        if not self.type_url or not self.nonce:
            raise RemoteProtocolError("a response must carry a type_url and a nonce")
        both = self.removed & self.resources.keys()
        if both:
            raise RemoteProtocolError(f"a response both updates and removes {sorted(both)}")
