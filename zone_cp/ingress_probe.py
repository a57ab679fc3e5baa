"""Can this zone CP reach the other zones' ingresses? A bounded TCP connect to each one.

The targets are the ``ZoneIngress`` resources the global passed down (those of other
zones: they carry the zone label), each at its advertised address and port, else its
address and port: where this zone's sidecars send cross-zone traffic. The probe is a TCP
connect within ``TIMEOUT`` seconds and nothing more: the ingress passes TLS through by SNI
to a sidecar that asks for a mesh client certificate, so a handshake without one proves
nothing more about the path and a failed one would be a false alarm. What ``gossamer
check`` reports is exactly that: the address accepted a TCP connection from the zone CP's
host (which is where the zone's sidecars usually run, but not necessarily).

``targets`` is pure; ``probe_all`` dials them concurrently and never raises for a
target: an unreachable one is a result with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from dataclasses import dataclass

from gossamer.model.base import Resource
from gossamer.model.labels import DISPLAY_NAME_LABEL, ZONE_LABEL
from gossamer.model.zonehealth import IngressProbe
from gossamer.model.zoneingress import ZoneIngressSpec

TIMEOUT = 3.0


@dataclass(frozen=True)
class Target:
    zone: str
    name: str
    address: str
    port: int


def targets(ingresses: Iterable[Resource], own_zone: str) -> list[Target]:
    """Other zones' ingresses, at the address cross-zone traffic is sent to."""
    out = []
    for res in ingresses:
        spec = res.spec
        if not isinstance(spec, ZoneIngressSpec):
            continue
        zone = res.labels.get(ZONE_LABEL) or spec.zone or own_zone
        if zone == own_zone:
            continue
        net = spec.networking
        address = str(net.advertised_address or net.address)
        port = net.advertised_port or net.port
        out.append(Target(zone, res.labels.get(DISPLAY_NAME_LABEL, res.name),
                          address, port))
    return sorted(out, key=lambda t: (t.zone, t.name))


async def probe(target: Target, timeout: float = TIMEOUT) -> IngressProbe:
    """Dial ``target`` once; the result says whether the connect succeeded, and why not."""
    error = ""
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(target.address, target.port)
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    except TimeoutError:
        error = f"no TCP connection within {timeout:g}s"
    except OSError as exc:
        kind = "connection refused" if isinstance(exc, ConnectionRefusedError) else ""
        error = kind or exc.strerror or str(exc) or type(exc).__name__
    return IngressProbe(zone=target.zone, name=target.name, address=target.address,
                        port=target.port, reachable=not error, error=error[:1000])


async def probe_all(found: list[Target], timeout: float = TIMEOUT) -> list[IngressProbe]:
    return list(await asyncio.gather(*(probe(t, timeout) for t in found)))
