"""Other zones' ingresses advertised by name (``--advertise ingress.east.example:10001``),
resolved by the zone CP so that its sidecars reach them through EDS.

EDS carries IP addresses only (``proxy.envoy.endpoints``), and a cross-zone cluster is one
EDS cluster holding the local instances at priority 0 and the remote zones' ingresses at
priority 1. Rather than split it into an EDS part and a ``STRICT_DNS`` part, the zone CP
resolves each name here and ``MeshState`` puts one remote endpoint per address it
resolved to: one cluster, one load assignment, and every proxy of the zone sees the same
addresses.

Theory of operation: ``IngressNames.run`` follows the ``MeshState``. Whenever the set of
names that other zones' ingresses advertise changes (``advertised_names``, pure), new
names are resolved at once; every name is resolved again every ``interval`` seconds
(30 by default: the host resolver, ``getaddrinfo``, honours ``/etc/hosts`` and
``nsswitch.conf`` as every other program on the host does, but reports no TTL). When
what a name resolves to changes, the state is refreshed, so the proxies' endpoints follow
the name's address records. A name that fails to resolve keeps its last addresses (a DNS
blip must not cut a zone off); one never resolved has none, and its ingress receives no
traffic until it does (logged once per failure streak).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

from gossamer.model.base import Resource
from gossamer.model.labels import ZONE_LABEL
from gossamer.model.zoneingress import ZoneIngressSpec

log = logging.getLogger(__name__)

Resolve = Callable[[str], Awaitable[tuple[str, ...]]]
REFRESH_INTERVAL = 30.0
RESOLVE_TIMEOUT = 10.0


class State(Protocol):
    """What of ``zone_cp.mesh_state.MeshState`` this module uses."""

    zone: str

    def listen(self, listener: Callable[[Resource | None], None]) -> Callable[[], None]: ...

    def of_kind(self, kind: str, mesh: str | None = None) -> list[Resource]: ...

    def refresh(self) -> None: ...


def is_ip(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def advertised_names(ingresses: Iterable[Resource], zone: str) -> frozenset[str]:
    """The host names (not IPs) that ingresses of zones other than ``zone`` advertise."""
    names = set()
    for zi in ingresses:
        spec = zi.spec
        if not isinstance(spec, ZoneIngressSpec):
            continue
        if (zi.labels.get(ZONE_LABEL) or spec.zone) in (None, zone):
            continue
        address = spec.networking.advertised_address or spec.networking.address
        if address and not is_ip(address):
            names.add(address.rstrip(".").lower())
    return frozenset(names)


async def resolve_host(name: str) -> tuple[str, ...]:
    """``name``'s addresses by the host's resolver (``getaddrinfo``), sorted."""
    infos = await asyncio.get_running_loop().getaddrinfo(name, None, type=socket.SOCK_STREAM)
    return tuple(sorted({str(info[4][0]) for info in infos}))


class IngressNames:
    """The addresses of every name other zones' ingresses advertise, kept current.

    ``resolve`` is read at each round and ``interval`` may be set at any time (a new
    interval starts a round at once): tests shorten it, or give a resolver of their own,
    once started."""

    def __init__(self, resolve: Resolve = resolve_host,
                 interval: float = REFRESH_INTERVAL) -> None:
        self.resolve = resolve
        self._interval = interval
        self._addresses: dict[str, tuple[str, ...]] = {}
        self._failing: set[str] = set()
        self._wanted: frozenset[str] = frozenset()
        self._wake = asyncio.Event()
        self.rounds = 0

    @property
    def interval(self) -> float:
        return self._interval

    @interval.setter
    def interval(self, seconds: float) -> None:
        self._interval = seconds
        self._wake.set()

    def addresses(self, name: str) -> tuple[str, ...]:
        """What ``name`` last resolved to (``()`` before its first answer)."""
        return self._addresses.get(name.rstrip(".").lower(), ())

    async def run(self, state: State) -> None:
        def changed(_: Resource | None) -> None:
            wanted = advertised_names(state.of_kind("ZoneIngress"), state.zone)
            if wanted != self._wanted:
                self._wanted = wanted
                self._wake.set()

        unlisten = state.listen(changed)
        changed(None)  # the state may have been listed before we listened
        try:
            while True:
                if await self.resolve_all():
                    state.refresh()
                self.rounds += 1
                self._wake.clear()
                try:
                    async with asyncio.timeout(self._interval):
                        await self._wake.wait()
                except TimeoutError:
                    pass
        finally:
            unlisten()

    async def resolve_all(self) -> bool:
        """Resolve every wanted name once; whether any name's addresses changed."""
        wanted = sorted(self._wanted)
        answers = await asyncio.gather(*(self._resolve_one(n) for n in wanted))
        before = dict(self._addresses)
        self._addresses = {n: a if a is not None else before.get(n, ())
                           for n, a in zip(wanted, answers, strict=True)}
        return self._addresses != before

    async def _resolve_one(self, name: str) -> tuple[str, ...] | None:
        try:
            async with asyncio.timeout(RESOLVE_TIMEOUT):
                found = tuple(a for a in await self.resolve(name) if is_ip(a))
        except (OSError, TimeoutError) as exc:
            if name not in self._failing:
                self._failing.add(name)
                log.warning("ingress name %s does not resolve (%s): keeping %s", name,
                            exc or "timed out", ", ".join(self.addresses(name)) or "nothing")
            return None
        if name in self._failing or self.addresses(name) != found:
            log.info("ingress name %s resolves to %s", name, ", ".join(found) or "nothing")
        self._failing.discard(name)
        return found
