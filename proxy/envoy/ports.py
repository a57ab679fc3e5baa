"""A service's ports, and the part of it that answers on one port.

A service is called on the ports its instances declare: each inbound's ``servicePort``
(else its ``port``) here, and the ``ports`` each other zone's ingress lists for it
(``ZoneIngress.availableServices``). Most services have one, and for them nothing here
changes anything: one cluster, ``<service>``, and the SNI ``<service>.<mesh>.mesh``.

A service with **several** ports cannot be one cluster: a connection to its VIP on 5432
must reach an instance's 5432 inbound, not whichever inbound the balancer picks, and a
zone ingress, which sees only the SNI, must know the port too. So a listener on one of
those ports sends to a cluster of that port (``names.cluster(service, port=...)``)
holding the local instances that serve the port and the zones that list it, and its
TLS names the port in the SNI: ``<port>.<service>.<mesh>.mesh``. Every ingress answers
that SNI for every port of every service it offers (``zone_ingress.envoy``), so the two
zones need not agree on how many ports the service has. A listener on any other port
(port 80, which every VIP answers on) keeps the whole service's cluster.

Pure: values in, values out.
"""

from __future__ import annotations

from dataclasses import replace

from gossamer.model.labels import PROTOCOL_TAG
from proxy.context import Endpoint, Service, ServicePort


def local_ports(endpoints: tuple[Endpoint, ...], default_protocol: str = "tcp"
                ) -> tuple[ServicePort, ...]:
    """The ports ``endpoints`` serve, ascending, with the protocol of the first instance
    that declares each."""
    seen: dict[int, str] = {}
    for e in endpoints:
        if e.service_port:
            seen.setdefault(e.service_port, e.tags.get(PROTOCOL_TAG, default_protocol))
    return tuple(ServicePort(p, seen[p]) for p in sorted(seen))


def service_ports(service: Service) -> tuple[ServicePort, ...]:
    """Every port of ``service``, here or in another zone, ascending; a port's protocol is
    the local instances' when they have the port, else the first zone's that lists it."""
    seen = {p.port: p for p in local_ports(service.endpoints, service.protocol)}
    for zone in service.remote:
        for p in zone.ports:
            seen.setdefault(p.port, p)
    return tuple(seen[p] for p in sorted(seen))


def port_of(service: Service, port: int) -> int | None:
    """The port a listener on ``port`` for ``service`` sends to by itself: ``port`` when
    the service has several ports and this is one of them, else None (the whole
    service)."""
    ports = [p.port for p in service_ports(service)]
    return port if len(ports) > 1 and port in ports else None


def at_port(service: Service, port: int | None) -> Service:
    """The part of ``service`` that answers on ``port``: its instances serving that port,
    the zones that list it, and that port's protocol. ``None`` is the whole service."""
    if port is None:
        return service
    protocol = next((p.protocol for p in service_ports(service) if p.port == port),
                    service.protocol)
    return replace(service, protocol=protocol,
                   endpoints=tuple(e for e in service.endpoints if e.service_port == port),
                   remote=tuple(z for z in service.remote
                                if any(p.port == port for p in z.ports)))
