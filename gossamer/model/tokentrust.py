"""TokenTrust: what a control plane needs to verify tokens another one signs.

The control plane that signs a purpose of tokens keeps its private keys to itself
(GlobalSecrets, never synced) and publishes one ``TokenTrust`` per (purpose, mesh) with
the public keys only: ``zone`` for zone tokens, ``dataplane.<mesh>`` for a mesh's
dataplane tokens (``trust_name``). Zones receive them and verify tokens they did not sign
(an ingress's zone token, a sidecar's dataplane token) without holding any signing key.
Revocations are not part of it: each is a ``TokenRevocation`` of its own.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, model_validator

from gossamer.model.base import KindDescriptor, Scope, SyncDirection
from gossamer.model.fields import SPEC_CONFIG
from gossamer.model.tokenrevocation import scoped_name


class TrustedKey(BaseModel):
    model_config = SPEC_CONFIG

    kid: str = Field(pattern=r"^[a-zA-Z0-9\-]{1,64}$")
    public_key: str = Field(max_length=4096)


class TokenTrustSpec(BaseModel):
    model_config = SPEC_CONFIG

    keys: list[TrustedKey] = Field(default_factory=list, max_length=64)

    @model_validator(mode="before")
    @classmethod
    def _drop_revoked(cls, data: Any) -> Any:
        # Versions before TokenRevocation stored the revoked ids here; a stored TokenTrust
        # of theirs must still load (the signer rewrites it without them at start).
        if isinstance(data, dict) and "revoked" in data:
            data = {k: v for k, v in data.items() if k != "revoked"}
        return data


def trust_name(purpose: str, mesh: str = "") -> str:
    """``zone`` for zone tokens, ``dataplane.<mesh>`` for a mesh's dataplane tokens
    (injective: see ``tokenrevocation.scoped_name``)."""
    return scoped_name(purpose, mesh) if mesh else purpose


DESCRIPTOR = KindDescriptor(
    name="TokenTrust",
    spec_model=TokenTrustSpec,
    scope=Scope.GLOBAL,
    path="token-trusts",
    noun="tokentrust",
    alias="tt",
    sync=SyncDirection.GLOBAL_TO_ZONES,
    spec_inline=True,
    system=True,
    description="public keys for verifying tokens another control plane signs",
)
