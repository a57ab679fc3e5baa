"""TokenTrust: what a control plane needs to verify tokens another one signs.

The global keeps its zone-token signing keys private (GlobalSecrets, never synced) and
publishes one ``TokenTrust`` named after the purpose (``zone``) with the public keys and
the revoked token ids; zones receive it and verify zone tokens presented to them (by a
zone ingress) without holding any signing key.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from gossamer.model.base import KindDescriptor, Scope, SyncDirection
from gossamer.model.fields import SPEC_CONFIG


class TrustedKey(BaseModel):
    model_config = SPEC_CONFIG

    kid: str = Field(pattern=r"^[a-zA-Z0-9\-]{1,64}$")
    public_key: str = Field(max_length=4096)


class Revocation(BaseModel):
    model_config = SPEC_CONFIG

    id: str = Field(pattern=r"^[a-zA-Z0-9\-]{1,128}$")
    expires_at: int = Field(ge=0)


class TokenTrustSpec(BaseModel):
    model_config = SPEC_CONFIG

    keys: list[TrustedKey] = Field(default_factory=list, max_length=64)
    revoked: list[Revocation] = Field(default_factory=list, max_length=100_000)


DESCRIPTOR = KindDescriptor(
    name="TokenTrust",
    spec_model=TokenTrustSpec,
    scope=Scope.GLOBAL,
    path="token-trusts",
    noun="tokentrust",
    alias="tt",
    sync=SyncDirection.GLOBAL_TO_ZONES,
    spec_inline=True,
    description="public keys and revocations for verifying another control plane's tokens",
)
