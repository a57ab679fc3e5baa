"""TokenRevocation: one revoked token, one row, kept until the token would have expired.

Revocations used to be one secret per purpose holding every revoked id, which a few
thousand revocations outgrew (and one bad entry broke every verification). Now each is a
resource of its own, written only by the control plane that signs the tokens (the
global, or a standalone zone), synced to every zone, and deleted by the signer when the
token it revokes would have expired anyway. A verifier asks for exactly one row: the
name is derived from (purpose, mesh, token id) by ``revocation_name``, injectively, so
"is this token revoked?" is one store get.

Names: ``zone.<id>`` for zone tokens, ``dataplane.<mesh>.<id>`` for dataplane tokens.
Token ids hold no dot, so the last dot ends the mesh; a name that would be longer than a
resource name may be is replaced by ``<purpose>-<sha256>`` of the triple (no direct form
has a ``-`` right after the purpose, so the two forms never meet).
"""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from gossamer.model.base import KindDescriptor, Scope, SyncDirection
from gossamer.model.fields import MAX_NAME_LENGTH, SPEC_CONFIG

# What Gossamer issues is 32 lower-case hex digits; ids keep to lower-case letters,
# digits and '-' so that the id is part of a resource name as it is.
TOKEN_ID_PATTERN = r"^[a-z0-9]([a-z0-9\-]{0,126}[a-z0-9])?$"
PURPOSES = ("zone", "dataplane")


class TokenRevocationSpec(BaseModel):
    """``purpose``: which tokens (``zone`` or ``dataplane``); ``mesh``: the dataplane
    token's mesh ("" for zone tokens); ``token_id``: its ``jti``; ``expires_at``: the
    unix time after which the token is refused anyway, when this row is dropped."""

    model_config = SPEC_CONFIG

    purpose: Literal["zone", "dataplane"]
    mesh: str = Field("", max_length=MAX_NAME_LENGTH)
    token_id: str = Field(pattern=TOKEN_ID_PATTERN)
    expires_at: int = Field(gt=0)

    @model_validator(mode="after")
    def _mesh_for_dataplane_only(self) -> TokenRevocationSpec:
        if (self.purpose == "dataplane") != bool(self.mesh):
            raise ValueError("mesh is required for a dataplane token and empty for a zone "
                             "token")
        return self

    @property
    def name(self) -> str:
        return revocation_name(self.purpose, self.mesh, self.token_id)


def scoped_name(prefix: str, *parts: str) -> str:
    """``<prefix>.<part>...`` when it fits a resource name, else ``<prefix>-<sha256>``.

    For one fixed ``prefix`` this is injective when only the first part may hold dots
    (a mesh name; the others are ids): the last parts end at known dots, and the hashed
    form is told apart by the ``-`` right after the prefix."""
    direct = ".".join((prefix, *parts))
    if len(direct) <= MAX_NAME_LENGTH:
        return direct
    digest = hashlib.sha256("\0".join((prefix, *parts)).encode()).hexdigest()
    return f"{prefix}-{digest}"


def revocation_name(purpose: str, mesh: str, token_id: str) -> str:
    """The one name the revocation of ``token_id`` is stored under."""
    return scoped_name(purpose, *([mesh] if mesh else []), token_id)


DESCRIPTOR = KindDescriptor(
    name="TokenRevocation",
    spec_model=TokenRevocationSpec,
    scope=Scope.GLOBAL,
    path="token-revocations",
    noun="tokenrevocation",
    alias="trev",
    sync=SyncDirection.GLOBAL_TO_ZONES,
    system=True,
    description="one revoked zone or dataplane token, kept until it would have expired",
)
