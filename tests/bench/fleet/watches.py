"""Watches: which simulated proxies a change affects, and when each has ACKed it.

A watch is armed before its change is applied. It names the affected proxies and a
predicate on what a proxy holds (``sidecar.Seen``); the time a proxy first satisfies it,
checked right after each ACK, is the time that proxy ACKed the change. The predicate
reads values unique to the change (a connect timeout no other change uses, the address
of the endpoint added), so a proxy cannot satisfy it with anything it held before, and
no message counting is involved. A proxy that already satisfies it when armed means the
change was not unique: ``arm`` refuses that loudly rather than measuring zero.

Pure: the clock is passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from tests.bench.fleet.sidecar import Seen, Spec

Predicate = Callable[[Seen], bool]


def timeout_is(ms: int) -> Predicate:
    """Some cluster's connect timeout is ``ms`` (a MeshTimeout's ``to[]`` reached it)."""
    return lambda seen: ms in seen.connect_ms.values()


def endpoint(service: str, address: str, present: bool) -> Predicate:
    """The load assignment of ``service`` holds ``address`` (or, not ``present``, does not
    and has been received)."""
    def check(seen: Seen) -> bool:
        held = seen.endpoints.get(service)
        return held is not None and (address in held) == present
    return check


def affected(specs: Iterable[Spec], command: dict[str, Any]) -> list[str]:
    """The names of the proxies the change of ``command`` affects: for a timeout on
    ``service`` (or, without one, the mesh) the proxies of that service (all); for an
    endpoint of ``service``, the proxies with it among their outbounds."""
    service = command.get("service")
    if command["kind"] == "timeout":
        return [s.name for s in specs if service is None or s.service == service]
    if command["kind"] == "endpoint":
        return [s.name for s in specs if service in s.outbounds]
    raise ValueError(f"unknown watch kind {command['kind']!r}")


def predicate(command: dict[str, Any]) -> Predicate:
    if command["kind"] == "timeout":
        return timeout_is(int(command["ms"]))
    if command["kind"] == "endpoint":
        return endpoint(command["service"], command["address"], bool(command["present"]))
    raise ValueError(f"unknown watch kind {command['kind']!r}")


@dataclass
class Watch:
    """One armed change: the proxies still waited for and when the last one ACKed."""

    id: str
    check: Predicate
    waiting: set[str]
    affected: int
    last: float = 0.0
    done_at: dict[str, float] = field(default_factory=dict)

    def saw(self, name: str, seen: Seen, now: float) -> bool:
        """``name`` ACKed a response; True when this made the watch complete."""
        if name not in self.waiting or not self.check(seen):
            return False
        self.waiting.discard(name)
        self.done_at[name] = now
        self.last = max(self.last, now)
        return not self.waiting


def arm(watch_id: str, command: dict[str, Any], specs: Iterable[Spec],
        seen_of: Callable[[str], Seen | None], now: float = 0.0) -> Watch:
    """A watch for ``command``; ``ValueError`` if an affected proxy already satisfies it
    (the change would not be observable) or is not connected. With ``held_is_done`` in
    ``command``, a proxy that already satisfies it is done at ``now`` instead."""
    specs = list(specs)
    names = affected(specs, command)
    check = predicate(command)
    watch = Watch(watch_id, check, set(names), len(names))
    for name in names:
        seen = seen_of(name)
        if seen is None:
            raise ValueError(f"watch {watch_id}: proxy {name} is not connected")
        if check(seen):
            if not command.get("held_is_done"):
                raise ValueError(f"watch {watch_id}: proxy {name} already holds the change")
            watch.saw(name, seen, now)
    return watch
