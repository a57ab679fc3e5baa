"""``/tokens/dataplane`` at a federated zone: refused, naming where to go instead.

In a federation the global signs every mesh's dataplane tokens (its keys never leave
it; the zone verifies with the ``TokenTrust`` it receives), so a zone can neither issue
nor revoke one, nor rotate a signing key. Answering with the reason beats a bare 404
from a missing route: an operator used to a standalone zone is told where the route
lives now.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from gossamer.errors import Conflict

AT_THE_GLOBAL = ("this zone is federated: dataplane tokens are issued and revoked at the "
                 "global control plane (POST /tokens/dataplane there, or `gossamer token "
                 "dataplane` with the global's context); the zone only verifies them")


def federated_dataplane_token_router() -> APIRouter:
    router = APIRouter(prefix="/tokens/dataplane", tags=["tokens"])

    refused: dict[int | str, dict[str, Any]] = {409: {"description": AT_THE_GLOBAL}}

    @router.post("", summary="Refused at a federated zone: issue at the global",
                 response_model=None, responses=refused)
    async def issue() -> None:
        raise Conflict(AT_THE_GLOBAL)

    @router.post("/revoke", summary="Refused at a federated zone: revoke at the global",
                 response_model=None, responses=refused)
    async def revoke() -> None:
        raise Conflict(AT_THE_GLOBAL)

    @router.post("/signing-keys", summary="Refused at a federated zone: rotate at the "
                 "global", response_model=None, responses=refused)
    async def rotate() -> None:
        raise Conflict(AT_THE_GLOBAL)

    return router
