"""Token routes: issue, revoke and rotate signing keys (``/tokens/...``).

The global serves ``/tokens/zone`` (zone tokens, scopes ``cp``, ``ingress`` and ``egress``); any
control plane that admits sidecars serves ``/tokens/dataplane`` (per mesh). Issuing needs
the admin token like every other write.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body
from pydantic import BaseModel, ConfigDict, Field

from authority.token_authority import TokenAuthority
from gossamer.errors import FieldError, InvalidResource
from gossamer.model.fields import Duration, Name, Tags, duration_seconds
from gossamer.model.labels import SERVICE_TAG
from gossamer.tokens import MAX_DATAPLANES_LIMIT, ZONE_SCOPES


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ZoneTokenRequest(_Request):
    zone: Name
    scopes: list[str] = Field(default_factory=lambda: ["cp", "egress", "ingress"],
                              max_length=4)
    valid_for: Duration = Field("720h", alias="validFor")


class DataplaneTokenRequest(_Request):
    """A dataplane token binds an identity: the service its sidecar serves, optionally
    the one Dataplane name it admits and tags every inbound must carry (and its
    certificate then carries), and how many Dataplanes may be live with it at once."""

    mesh: Name = "default"
    service: Name
    valid_for: Duration = Field("720h", alias="validFor")
    name: Name | None = None
    tags: Tags = Field(default_factory=dict)
    max_dataplanes: int = Field(1, alias="maxDataplanes", ge=1, le=MAX_DATAPLANES_LIMIT)


class SigningKeyRequest(_Request):
    mesh: Name = "default"


class RevokeRequest(_Request):
    # Lower-case as issued: the id is part of the TokenRevocation's name. The expiry's
    # range (ahead of now, within 10 years) is checked by the authority, against its clock.
    id: str = Field(min_length=1, max_length=128, pattern=r"^[a-z0-9]([a-z0-9\-]*[a-z0-9])?$")
    expires_at: int | None = Field(None, alias="expiresAt", gt=0)
    mesh: Name | None = None


def _answer(token: str, claims: Any) -> dict[str, Any]:
    return {"token": token, "id": claims.token_id, "expiresAt": claims.expires_at,
            "subject": claims.subject, "scopes": sorted(claims.scopes), "mesh": claims.mesh}


def zone_token_router(authority: TokenAuthority) -> APIRouter:
    router = APIRouter(prefix="/tokens/zone", tags=["tokens"])

    @router.post("", summary="Issue a zone token")
    async def issue(req: Annotated[ZoneTokenRequest, Body()]) -> dict[str, Any]:
        unknown = set(req.scopes) - ZONE_SCOPES
        if unknown:
            raise InvalidResource("invalid token request", [FieldError(
                "scopes", f"unknown scopes {sorted(unknown)}; expected {sorted(ZONE_SCOPES)}")])
        token, claims = await authority.issue(req.zone, duration_seconds(req.valid_for),
                                              req.scopes)
        return _answer(token, claims)

    _common(router, authority)
    return router


def dataplane_token_router(authority_for: Callable[[str], TokenAuthority]) -> APIRouter:
    router = APIRouter(prefix="/tokens/dataplane", tags=["tokens"])

    @router.post("", summary="Issue a dataplane token for one service of one mesh")
    async def issue(req: Annotated[DataplaneTokenRequest, Body()]) -> dict[str, Any]:
        if SERVICE_TAG in req.tags:
            raise InvalidResource("invalid token request", [FieldError(
                "tags", f"{SERVICE_TAG} is the token's service: set it with 'service'")])
        authority = authority_for(req.mesh)
        await authority.manager.get("Mesh", req.mesh)  # a clear 404 for an unknown mesh
        token, claims = await authority.issue(
            req.service, duration_seconds(req.valid_for), name=req.name or "",
            tags=req.tags, max_dataplanes=req.max_dataplanes)
        return {**_answer(token, claims), "name": claims.name, "tags": dict(claims.tags),
                "maxDataplanes": claims.max_dataplanes}

    @router.post("/revoke", summary="Revoke a dataplane token by id")
    async def revoke(req: Annotated[RevokeRequest, Body()]) -> dict[str, Any]:
        authority = authority_for(req.mesh or "default")
        await authority.manager.get("Mesh", req.mesh or "default")  # 404 for an unknown mesh
        await authority.revoke(req.id, req.expires_at)
        return {"revoked": req.id}

    @router.post("/signing-keys", summary="Add a mesh's dataplane-token signing key; older "
                                          "keys keep verifying until deleted")
    async def rotate(req: Annotated[SigningKeyRequest, Body()]) -> dict[str, Any]:
        authority = authority_for(req.mesh)
        await authority.manager.get("Mesh", req.mesh)  # 404 for an unknown mesh
        key = await authority.rotate()
        return {"kid": key.kid, "mesh": req.mesh}

    return router


def _common(router: APIRouter, authority: TokenAuthority) -> None:
    @router.post("/revoke", summary="Revoke a token by id: its bearer is cut off at once")
    async def revoke(req: Annotated[RevokeRequest, Body()]) -> dict[str, Any]:
        await authority.revoke(req.id, req.expires_at)
        return {"revoked": req.id}

    @router.post("/signing-keys", summary="Add a signing key; older keys keep verifying")
    async def rotate() -> dict[str, Any]:
        key = await authority.rotate()
        return {"kid": key.kid}
