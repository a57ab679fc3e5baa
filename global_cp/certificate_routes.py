"""``GET /certificates/_overviews`` at the global: each zone's intermediate CA per mesh.

Read from the ``ZoneCertificate`` resources the global signed (``authority.mesh_ca``): the
zone, the mesh, the intermediate's serial, issuer and validity, and the ``signer`` (which
mesh CA signed it, ``<backend>/<generation>``), so an operator sees which intermediates a
root rotation has not re-issued yet. A certificate that does not parse is listed with an
``error`` instead of failing the whole list.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from cryptography import x509
from fastapi import APIRouter

from gossamer.model.base import Resource
from gossamer.model.zonecertificate import ZoneCertificateSpec
from gossamer.resources import ResourceManager


def zone_certificate_overview(res: Resource, now: dt.datetime) -> dict[str, Any]:
    """One ``ZoneCertificate`` as the overview lists it (pure)."""
    spec = res.spec
    assert isinstance(spec, ZoneCertificateSpec)
    item: dict[str, Any] = {"name": res.name, "zone": spec.zone, "mesh": spec.mesh,
                            "signer": spec.signer, "serial": None, "issuer": None,
                            "notBefore": None, "notAfter": None, "expiresInSeconds": None,
                            "error": None}
    try:
        cert = x509.load_pem_x509_certificate(spec.certificate.encode())
    except ValueError as exc:
        item["error"] = f"the certificate does not parse: {exc}"
        return item
    not_after = cert.not_valid_after_utc
    item.update(serial=format(cert.serial_number, "x"), issuer=cert.issuer.rfc4514_string(),
                notBefore=cert.not_valid_before_utc.isoformat(), notAfter=not_after.isoformat(),
                expiresInSeconds=int((not_after - now).total_seconds()))
    return item


def certificate_router(manager: ResourceManager) -> APIRouter:
    router = APIRouter(tags=["Certificate"])

    @router.get("/certificates/_overviews",
                summary="Every zone's intermediate CA per mesh, with its serial and expiry")
    async def overviews() -> dict[str, Any]:
        page = await manager.list("ZoneCertificate")
        now = dt.datetime.now(dt.UTC)
        items = sorted((zone_certificate_overview(r, now) for r in page.items),
                       key=lambda i: (i["zone"], i["mesh"]))
        return {"items": items, "total": len(items), "next": None}

    return router
