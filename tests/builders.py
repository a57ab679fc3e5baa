"""Builders for the resources tests make most: one Dataplane shape, in two forms.

``dataplane_doc`` is the document a user would apply (what the API, the CLI and an
agent's registration take); ``dataplane`` is the same document parsed into a
``Resource`` (what a store or a generator takes). The defaults are one inbound of
``backend`` at 10.0.0.7, port 18080 for service port 8080, in mesh ``default``; a test
names only what matters to it. Keys a test does not pass (labels, outbounds) are left
out of the document, as a user would leave them out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gossamer.model.base import Resource
from gossamer.model.labels import SERVICE_TAG
from gossamer.model.registry import REGISTRY, Registry, parse_document


def inbound(service: str, port: int = 18080, service_port: int | None = 8080,
            **tags: str) -> dict[str, Any]:
    """One inbound of ``service`` (more tags as keywords); no servicePort when None."""
    found: dict[str, Any] = {"port": port}
    if service_port is not None:
        found["servicePort"] = service_port
    found["tags"] = {SERVICE_TAG: service, **tags}
    return found


def dataplane_doc(name: str, service: str = "backend", *, mesh: str = "default",
                  address: str = "10.0.0.7", port: int = 18080,
                  service_port: int | None = 8080, tags: Mapping[str, str] | None = None,
                  inbounds: Sequence[Mapping[str, Any]] | None = None,
                  outbounds: Sequence[Mapping[str, Any]] | None = None,
                  labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A Dataplane document: one inbound of ``service`` (with ``tags`` beside the service
    tag), or the given ``inbounds`` instead."""
    if inbounds is None:
        inbounds = [inbound(service, port, service_port, **(tags or {}))]
    networking: dict[str, Any] = {"address": address,
                                  "inbound": [dict(i) for i in inbounds]}
    if outbounds is not None:
        networking["outbound"] = [dict(o) for o in outbounds]
    doc: dict[str, Any] = {"type": "Dataplane", "name": name, "mesh": mesh}
    if labels is not None:
        doc["labels"] = dict(labels)
    doc["networking"] = networking
    return doc


def dataplane(name: str, service: str = "backend", *, registry: Registry = REGISTRY,
              **fields: Any) -> Resource:
    """``dataplane_doc(name, service, **fields)`` parsed with ``registry``."""
    return parse_document(dataplane_doc(name, service, **fields), registry)
