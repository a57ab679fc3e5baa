"""Prometheus HTTP service discovery: every sidecar's metrics address, from the zone CP.

A MeshMetric with a ``Prometheus`` backend makes a sidecar's Envoy serve its stats on a
listener ``prometheus:<port>`` (``proxy.envoy.metrics``). Prometheus finds those
listeners here, with ``http_sd_configs`` pointed at ``GET /prometheus/http_sd`` on the
zone CP's API (behind the admin token, like every route but ``/metrics`` and the health
checks: it names every workload's address)::

    scrape_configs:
    - job_name: gossamer-sidecars
      http_sd_configs:
      - url: http://zone-cp:5681/prometheus/http_sd
        authorization: {credentials_file: /etc/prometheus/gossamer-admin-token}

The answer is Prometheus' ``http_sd`` format: a JSON list of target groups, one per
listener, ``{"targets": ["<address>:<port>"], "labels": {...}}`` with
``__metrics_path__`` (the backend's path), ``__scheme__`` (``https`` when the listener
has TLS: ``ActiveMTLSBackend`` or ``ProvidedTLS``) and ``__meta_gossamer_*`` labels
(mesh, dataplane, service, zone) for relabelling.

The targets are read from what each sidecar was last sent (``ProxyInsight.generated``),
for sidecars whose agent has a live session: what Envoy serves, not a second reading of
the policies. ``target_groups`` is the pure part.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter

from gossamer.model.dataplane import DataplaneSpec
from proxy.envoy import names
from proxy.envoy.resources import ProxyResources
from zone_cp.agents import AgentRegistry
from zone_cp.xds import AdsServer

PATH = "/prometheus/http_sd"
LISTENER_PREFIX = names.prometheus(0).removesuffix("0")  # "prometheus:"


@dataclass(frozen=True)
class Sidecar:
    """A sidecar as service discovery labels it, with the config it was last sent."""

    mesh: str
    name: str
    zone: str
    services: tuple[str, ...]
    generated: ProxyResources


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address  # IPv6 in brackets


def _path(generated: ProxyResources, name: str) -> str | None:
    """The path the listener's route configuration scrapes (the first exact match)."""
    routes = generated.routes.get(name)
    for vhost in routes.virtual_hosts if routes is not None else ():
        for route in vhost.routes:
            if route.match.path and route.HasField("route"):
                return str(route.match.path)
    return None


def target_groups(sidecars: Iterable[Sidecar]) -> list[dict[str, Any]]:
    """One ``http_sd`` target group per metrics listener of each sidecar, sorted."""
    groups = []
    for sc in sidecars:
        for name, listener in sorted(sc.generated.listeners.items()):
            if not name.startswith(LISTENER_PREFIX):
                continue
            path = _path(sc.generated, name)
            sock = listener.address.socket_address
            if path is None or not sock.address:
                continue
            tls = any(chain.HasField("transport_socket") for chain in listener.filter_chains)
            groups.append({
                "targets": [f"{_host(sock.address)}:{sock.port_value}"],
                "labels": {"__metrics_path__": path, "__scheme__": "https" if tls else "http",
                           "__meta_gossamer_mesh": sc.mesh,
                           "__meta_gossamer_dataplane": sc.name,
                           "__meta_gossamer_service": ",".join(sc.services),
                           "__meta_gossamer_zone": sc.zone}})
    return groups


def live_sidecars(agents: AgentRegistry, ads: AdsServer, zone: str) -> list[Sidecar]:
    """Sidecars with a live agent session and a config generated for them."""
    out = []
    for node_id, session in sorted(agents.sessions.items()):
        insight = ads.insights.get(node_id)
        if insight is None or insight.generated is None:
            continue
        spec = session.dataplane.spec
        assert isinstance(spec, DataplaneSpec), node_id  # a sidecar's session holds one
        out.append(Sidecar(session.mesh, session.name, zone, tuple(spec.services),
                           insight.generated))
    return out


def http_sd_router(agents: AgentRegistry, ads: AdsServer, zone: str) -> APIRouter:
    router = APIRouter(tags=["Prometheus"])

    @router.get(PATH, summary="Every sidecar's metrics listener (Prometheus http_sd)")
    async def http_sd() -> list[dict[str, Any]]:
        return target_groups(live_sidecars(agents, ads, zone))

    return router
