"""Bounds on what one peer can make a publisher hold.

An authenticated peer (a zone on the zone sync, an Envoy on ADS) sends subscriptions: type
URLs, resource names, the versions it says it holds. Each becomes per-session state (a
``TypeState`` per type, a set of names, an ``acked`` map), and each message waits in the
stream's inbox until it is handled. Without bounds a peer could grow that state until the
control plane runs out of memory, so every structure has one, checked before the state
grows (``check_request``) and after a subscription change (``check_subscription``):

* only the type URLs the server publishes (``types``), and at most ``max_types`` of them;
* at most ``max_names`` names per type subscribed, and per list in a request;
* names and versions of at most ``max_name_length`` characters;
* at most ``max_queued`` messages waiting in the inbox (``sync.stream``).

A breach is the peer's fault: ``PeerLimitExceeded`` (RESOURCE_EXHAUSTED) for a count,
``RemoteProtocolError`` (INVALID_ARGUMENT) for a type or a name we do not take; the shell
ends the stream with that status and the message naming the bound. The defaults sit far
above what a zone or a sidecar legitimately sends (a zone resumes with every resource it
holds of a type, so ``max_names`` is sized for large zones).

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from sync.errors import RemoteProtocolError
from sync.messages import Request


class PeerLimitExceeded(RemoteProtocolError):
    """The peer asked for more than a per-peer bound allows."""

    title = "per-peer limit exceeded"
    grpc_status = "RESOURCE_EXHAUSTED"


@dataclass(frozen=True)
class Bounds:
    """Per-stream limits; ``types`` None accepts any type URL (tests of the engine)."""

    types: frozenset[str] | None = None
    max_types: int = 32
    max_names: int = 200_000
    max_name_length: int = 1024
    max_queued: int = 1000

    def __post_init__(self) -> None:
        if min(self.max_types, self.max_names, self.max_name_length, self.max_queued) < 1:
            raise ValueError("every bound must be at least 1")


def _cut(text: str) -> str:
    return text if len(text) <= 100 else f"{text[:100]}... ({len(text)} characters)"


def check_request(bounds: Bounds, request: Request, types_held: Collection[str]) -> None:
    """Refuse a request before it changes any state. ``types_held``: the type URLs the
    session already has."""
    if bounds.types is not None and request.type_url not in bounds.types:
        raise RemoteProtocolError(f"type URL {_cut(request.type_url)!r} is not one this "
                                  f"server publishes (it publishes {len(bounds.types)} types)")
    if request.type_url not in types_held and len(types_held) >= bounds.max_types:
        raise PeerLimitExceeded(f"more than {bounds.max_types} type URLs subscribed on one "
                                "stream")
    lists = {"resource_names_subscribe": request.subscribe,
             "resource_names_unsubscribe": request.unsubscribe,
             "initial_resource_versions": request.initial_versions}
    for field, names in lists.items():
        if len(names) > bounds.max_names:
            raise PeerLimitExceeded(f"{len(names)} names in {field} of one request; at most "
                                    f"{bounds.max_names} per type")
        _check_lengths(bounds, field, names)
    _check_lengths(bounds, "initial_resource_versions (versions)",
                   request.initial_versions.values())


def _check_lengths(bounds: Bounds, field: str, names: Iterable[str]) -> None:
    for name in names:
        if len(name) > bounds.max_name_length:
            raise RemoteProtocolError(f"a name of {len(name)} characters in {field}; at most "
                                      f"{bounds.max_name_length}")


def check_subscription(bounds: Bounds, type_url: str, names: int) -> None:
    """Refuse a session whose subscription to ``type_url`` grew past ``max_names`` names
    (over several requests). What it holds grows only by the initial report, checked
    above, and by what we send it, which our own data bounds."""
    if names > bounds.max_names:
        raise PeerLimitExceeded(f"more than {bounds.max_names} resource names subscribed "
                                f"for {_cut(type_url)}")
