"""What a proxy's ADS stream carries and what ``inspect`` shows of it.

``desired_entries`` turns a proxy's generated ``ProxyResources`` into the delta engine's
entries (content digests as versions, a load assignment's version tied to its cluster's);
``ProxyInsight`` is one proxy's stream as ``inspect`` sees it. Pure: the gRPC server that
uses them is ``zone_cp.xds``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from proxy.envoy.resources import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    ProxyResources,
)
from sync.messages import Entry, Payload
from sync.outcomes import Outcome, Tally
from zone_cp.mesh_dns import bind_hint

log = logging.getLogger("zone_cp.xds")

# ``ProxyResources``' fields (the kind names of ``inspect``'s output) and their type URLs.
TYPE_URLS = {
    "listeners": LISTENER_TYPE,
    "clusters": CLUSTER_TYPE,
    "endpoints": ENDPOINT_TYPE,
    "routes": ROUTE_TYPE,
}

Entries = dict[str, dict[str, Entry]]  # a proxy's engine entries by type URL, then name


def entries(generated: ProxyResources) -> Iterator[tuple[str, str, Message]]:
    """Every resource of ``generated`` as ``(type_url, name, message)``, in
    ``TYPE_URLS``' order, then by name."""
    for attr, type_url in TYPE_URLS.items():
        for name, message in sorted(getattr(generated, attr).items()):
            yield type_url, name, message


def encode(message: Message, type_url: str) -> Entry:
    value = message.SerializeToString(deterministic=True)
    return Entry(version=digest(value), payload=Payload(type_url, value))


def digest(value: bytes) -> str:
    """A resource version: a short digest of its serialized bytes."""
    return hashlib.sha256(value).hexdigest()[:20]


def desired_entries(generated: ProxyResources,
                    encoder: Callable[[Message, str], Entry] = encode) -> Entries:
    """Every resource of ``generated`` as engine entries, by type URL (``encoder``: how a
    message becomes an entry, e.g. through a memo shared by many proxies).

    A load assignment's version also covers its cluster's (they share a name): Envoy
    warms an updated EDS cluster until that cluster's assignment arrives again, and over
    delta xDS it asks for nothing it already holds, so an unchanged assignment would not
    be re-sent and the new cluster would wait out Envoy's initial fetch timeout (15 s)
    before it takes traffic. With the combined version the assignment follows the
    cluster (the engine sends types in order, CDS before EDS).
    """
    desired: dict[str, dict[str, Entry]] = {t: {} for t in TYPE_URLS.values()}
    for type_url, name, message in entries(generated):
        desired[type_url][name] = encoder(message, type_url)
    clusters = desired[CLUSTER_TYPE]
    assignments = desired[ENDPOINT_TYPE]
    for name, entry in assignments.items():
        cluster = clusters.get(name)
        if cluster is not None:
            version = digest(f"{entry.version}/{cluster.version}".encode())
            assignments[name] = replace(entry, version=version)
    return desired


@dataclass
class ProxyInsight:
    """One proxy's ADS stream for ``inspect``: connected or not, the outcomes of what it
    was sent (a ``sync.outcomes.Tally``) and the config last generated for it."""

    node_id: str
    connected: bool = False
    tally: Tally = field(default_factory=Tally)
    generated: ProxyResources | None = None
    vip_cidr: str = "240.0.0.0/4"  # for the hint of a VIP Envoy cannot bind

    @property
    def acked(self) -> int:
        return self.tally.totals().acked

    @property
    def nacked(self) -> int:
        return self.tally.totals().nacked

    @property
    def last_nack(self) -> str:
        return self.tally.last_nack

    def observe(self, message: Any, outcome: Outcome) -> None:
        """Count one outcome of the stream (``sync.observed``); a NACK is logged and kept."""
        if outcome is Outcome.NACKED:
            detail = message.error_detail.message
            self.tally.nack(message.type_url, detail)
            log.warning("proxy %s NACKed %s: %s", self.node_id, message.type_url, detail[:500])
        else:
            self.tally.add(message.type_url, outcome)

    def config(self) -> dict[str, dict[str, Any]]:
        """The Envoy resources last generated for this proxy, as JSON (for inspect)."""
        if self.generated is None:
            return {}
        out: dict[str, dict[str, Any]] = {kind: {} for kind in TYPE_URLS}
        kinds = {v: k for k, v in TYPE_URLS.items()}
        for type_url, name, message in entries(self.generated):
            out[kinds[type_url]][name] = json_format.MessageToDict(message)
        return out

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"nodeId": self.node_id, "connected": self.connected,
                               "acked": self.acked, "nacked": self.nacked,
                               "lastNack": self.last_nack}
        hint = bind_hint(self.last_nack or "", self.vip_cidr)
        if hint is not None:
            out["hint"] = hint
        return out


