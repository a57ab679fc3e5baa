"""How generated resources are named: one function per kind of name.

The xDS server, ``gossamer inspect`` and the tests read these names, and shared pieces
(outbound clusters, their load assignments) must get the same name on every proxy, so
a name depends only on what the resource is for, never on the proxy:

- ``inbound:<address>:<port>``: an inbound listener and its route configuration;
- ``localhost:<servicePort>``: the local application behind an inbound
  (``local:<serviceAddress>:<servicePort>`` when the inbound sets another address);
- ``outbound:<address>:<port>``: an outbound listener; ``outbound:<service>``: the route
  configuration its HTTP connection manager fetches by RDS (``outbound:<service>:<port>``
  for one port of a service with several, ``proxy.envoy.ports``);
- ``<service>``: the outbound cluster of a service, and its ClusterLoadAssignment;
  ``<service>__p<port>``: the cluster of one port of a service with several;
- ``<service>__<8 hex>``: a subset of a service's instances selected by tags (a
  ``MeshServiceSubset`` backend); the hex is a digest of the sorted tags, and ``_`` never
  occurs in a service name, so subset names cannot collide with service names;
- ``<service>__z<zone>``: a service's instances in one zone, the cluster of a
  zone-pinned name (``<service>.svc.<zone>.mesh``), and ``outbound:<service>__z<zone>``
  its route configuration (a zone name holds no ``_``);
- ``extsvc@<name>``: the cluster of a MeshExternalService (its endpoints inline: STATIC
  or STRICT_DNS, no EDS), and ``outbound:extsvc@<name>`` its route configuration; the
  name is the external service's destination key (``gossamer.model.meshexternalservice``)
  and ``@`` never occurs in a service name, so it cannot collide with a service's;
- ``prometheus:<port>``: the MeshMetric Prometheus listener and its routes;
- ``otlp:<host>:<port>``, ``zipkin:<host>:<port>``, ``datadog:<host>:<port>``: clusters of
  telemetry collectors.
"""

from __future__ import annotations

import hashlib
import json

from gossamer.model.meshexternalservice import destination_key
from gossamer.policy.selectors import TagSet

LOCALHOST = "127.0.0.1"


def inbound(address: str, port: int) -> str:
    return f"inbound:{address}:{port}"


def local_app(port: int, address: str = LOCALHOST) -> str:
    return f"localhost:{port}" if address == LOCALHOST else f"local:{address}:{port}"


def outbound_listener(address: str, port: int) -> str:
    return f"outbound:{address}:{port}"


def outbound_route(service: str, port: int | None = None, zone: str = "") -> str:
    name = f"{service}__z{zone}" if zone else service
    return f"outbound:{name}" if port is None else f"outbound:{name}:{port}"


def cluster(service: str, subset: TagSet = (), port: int | None = None,
            zone: str = "") -> str:
    """The cluster (and load assignment) of ``service``, or of its ``subset`` by tags,
    or of its instances in one ``zone``, or of one ``port`` of it (a hex digest never
    holds a ``p`` or a ``z``)."""
    name = service
    if subset:
        digest = hashlib.sha256(json.dumps(sorted(subset)).encode()).hexdigest()[:8]
        name = f"{service}__{digest}"
    if zone:
        name = f"{name}__z{zone}"
    return name if port is None else f"{name}__p{port}"


def external_cluster(name: str) -> str:
    """The cluster of the MeshExternalService ``name``."""
    return destination_key(name)


def prometheus(port: int) -> str:
    return f"prometheus:{port}"


def collector(kind: str, host: str, port: int) -> str:
    return f"{kind}:{host}:{port}"


def tag_set(tags: dict[str, str] | None) -> TagSet:
    return tuple(sorted((tags or {}).items()))
