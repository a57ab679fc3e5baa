"""Mesh overviews and CA rotation: what ``gossamer inspect meshes`` and ``gossamer mesh
rotate-ca`` call, at the control plane that owns the roots (the global, or a standalone
zone).

An overview joins the Mesh, its ``MeshTrust`` (phase, signer, the roots in the bundle)
and each zone's ``ZoneTrustStatus`` (sidecars serving the bundle, certificates per root),
and counts the certificates still on roots the mesh is retiring.
"""

from __future__ import annotations

from typing import Any

from cryptography import x509
from fastapi import APIRouter

from authority.mesh_ca import MeshCaController, enabled_backend, zone_of
from gossamer.errors import NotFound
from gossamer.model.base import Resource
from gossamer.model.mesh import MeshSpec
from gossamer.model.meshtrust import CaIdentity, MeshTrustSpec
from gossamer.model.zonetrust import ZoneTrustStatusSpec
from gossamer.pki.certs import fingerprint
from gossamer.resources import ResourceManager


def _ca(ca: CaIdentity | None) -> dict[str, Any] | None:
    if ca is None:
        return None
    return {"backend": ca.backend, "type": ca.type, "generation": ca.generation,
            "issuesWorkloads": ca.issues_workloads, "roots": list(ca.fingerprints)}


def _roots(trust: MeshTrustSpec) -> list[dict[str, Any]]:
    owners = {f: ca.backend for ca in (trust.retiring, trust.incoming, trust.signer)
              if ca is not None for f in ca.fingerprints}
    out = []
    pem = trust.trust_bundle.encode()
    for cert in x509.load_pem_x509_certificates(pem) if pem.strip() else []:
        fp = fingerprint(cert)
        out.append({"fingerprint": fp, "backend": owners.get(fp, ""),
                    "subject": cert.subject.rfc4514_string(),
                    "notAfter": cert.not_valid_after_utc.isoformat()})
    return out


def mesh_overview(mesh: Resource, trust: MeshTrustSpec | None,
                  zones: list[tuple[str, ZoneTrustStatusSpec]]) -> dict[str, Any]:
    spec = mesh.spec
    assert isinstance(spec, MeshSpec)
    backend = enabled_backend(spec)
    doc: dict[str, Any] = {
        "name": mesh.name,
        "mtls": {"enabledBackend": backend.name, "type": backend.type.value,
                 "mode": spec.mtls.mode.value if spec.mtls else "strict"},
        "trust": None, "zones": [], "certificatesOnOldRoots": 0,
    }
    if trust is None:
        return doc
    current = set(trust.signer.fingerprints)
    doc["trust"] = {"phase": trust.phase.value, "since": trust.since,
                    "message": trust.message, "bundleDigest": trust.bundle_digest,
                    "signer": _ca(trust.signer), "incoming": _ca(trust.incoming),
                    "retiring": _ca(trust.retiring), "roots": _roots(trust)}
    old_total = 0
    for zone, status in sorted(zones, key=lambda z: z[0]):
        old = sum(n for root, n in status.certificates.items()
                  if root not in current and root != "pending")
        old_total += old
        doc["zones"].append({
            "zone": zone, "dataplanes": status.dataplanes,
            "dataplanesWithBundle": status.dataplanes_with_bundle,
            "bundleCurrent": status.bundle_digest == trust.bundle_digest,
            "certificates": dict(status.certificates), "certificatesOnOldRoots": old,
            "intermediateRoot": status.intermediate_root,
            "issuanceError": status.issuance_error, "updatedAt": status.updated_at})
    doc["certificatesOnOldRoots"] = old_total
    return doc


def mesh_router(manager: ResourceManager, controller: MeshCaController,
                local_zone: str | None = None) -> APIRouter:
    router = APIRouter(tags=["meshes"])

    async def statuses() -> dict[str, list[tuple[str, ZoneTrustStatusSpec]]]:
        out: dict[str, list[tuple[str, ZoneTrustStatusSpec]]] = {}
        for res in (await manager.list("ZoneTrustStatus")).items:
            if not isinstance(res.spec, ZoneTrustStatusSpec):
                continue
            zone = zone_of(res, local_zone)
            if zone:
                out.setdefault(res.spec.mesh, []).append((zone, res.spec))
        return out

    async def trusts() -> dict[str, MeshTrustSpec]:
        return {r.name: r.spec for r in (await manager.list("MeshTrust")).items
                if isinstance(r.spec, MeshTrustSpec)}

    @router.get("/meshes/_overviews", summary="Every mesh with its CA and rotation state")
    async def overviews() -> dict[str, Any]:
        by_mesh, known = await statuses(), await trusts()
        return {"items": [mesh_overview(m, known.get(m.name), by_mesh.get(m.name, []))
                          for m in (await manager.list("Mesh")).items]}

    @router.get("/meshes/{name}/_overview", summary="One mesh with its CA and rotation state")
    async def one(name: str) -> dict[str, Any]:
        mesh = await manager.get("Mesh", name)
        known = await trusts()
        return mesh_overview(mesh, known.get(name), (await statuses()).get(name, []))

    @router.post("/meshes/{name}/ca/rotate", summary="Regenerate the mesh's builtin root")
    async def rotate(name: str) -> dict[str, Any]:
        await manager.get("Mesh", name)
        try:
            await manager.get("MeshTrust", name)
        except NotFound:
            raise NotFound(f"mesh {name!r} has no CA yet: try again in a moment") from None
        trust = await controller.request_rotation(name)
        return {"mesh": name,
                "requestedGeneration": trust.generations.get(trust.signer.backend, 0)}

    return router
