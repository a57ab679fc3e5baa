"""``inspect`` for dataplanes on a zone CP: who is connected, their certificates, ACK/NACK
counts, and the Envoy config each was last sent.

``certificate`` is what the sidecar last reported it serves (``zone_cp.cert_status``):
serial, issuer, validity, URIs, the digest of its trust bundle and whether it is due
for renewal; null until the sidecar has reported one."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter

from gossamer.errors import NotFound
from gossamer.model.registry import to_document
from gossamer.resources import ResourceManager
from zone_cp.agent_session import AgentSession, sidecar_node_id
from zone_cp.agents import AgentRegistry
from zone_cp.xds import AdsServer


def dataplane_router(manager: ResourceManager, agents: AgentRegistry,
                     ads: AdsServer) -> APIRouter:
    router = APIRouter(tags=["Dataplane"])

    def overview(mesh: str, name: str, doc: dict[str, Any] | None) -> dict[str, Any]:
        node_id = sidecar_node_id(mesh, name)
        session = agents.sessions.get(node_id)
        insight = ads.insights.get(node_id)
        return {
            "mesh": mesh, "name": name, "dataplane": doc,
            "online": session is not None,
            "certificate": None if session is None else certificate_json(
                session, dt.datetime.now(dt.UTC)),
            "xds": insight.to_json() if insight else None,
        }

    @router.get("/dataplanes/_overviews", summary="Every dataplane with its connection state")
    async def overviews() -> dict[str, Any]:
        page = await manager.list("Dataplane")
        items = [overview(r.mesh, r.name, to_document(r)) for r in page.items]
        return {"items": items, "total": len(items), "next": None}

    @router.get("/meshes/{mesh}/dataplanes/{name}/_overview", summary="One dataplane's state")
    async def one(mesh: str, name: str) -> dict[str, Any]:
        return overview(mesh, name, to_document(await manager.get("Dataplane", name, mesh)))

    @router.get("/meshes/{mesh}/dataplanes/{name}/_config",
                summary="The Envoy resources last sent to this dataplane")
    async def config(mesh: str, name: str) -> dict[str, Any]:
        insight = ads.insights.get(sidecar_node_id(mesh, name))
        if insight is None or insight.generated is None:
            raise NotFound(f"no config was generated for dataplane {name!r} in mesh {mesh!r}")
        return insight.config()

    return router


def certificate_json(session: AgentSession, now: dt.datetime) -> dict[str, Any] | None:
    """The reported certificate as the overview shows it; None before the first report."""
    report = session.report
    health = session.health(now)
    if report is None or health is None:
        return None
    return {**report.certificate.to_json(now),
            "trustBundleDigest": report.trust_bundle_digest,
            "reportedAt": report.reported_at.isoformat(), "health": health.value}
