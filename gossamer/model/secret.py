"""Secret (mesh-scoped) and GlobalSecret: opaque bytes, base64 in ``data``.

Secrets (synced to every zone) hold public CA material of ``provided`` backends and Vault
credentials; GlobalSecrets (never synced) hold what must not leave the control plane that
owns it: zone-token signing keys, builtin mesh roots, a ``provided`` backend's private key,
a zone's own intermediate keys. Both are readable only with the admin token.
"""

from __future__ import annotations

import base64
import binascii

from pydantic import BaseModel, Field, field_validator

from gossamer.model.base import KindDescriptor, Scope, SyncDirection
from gossamer.model.fields import SPEC_CONFIG

MAX_SECRET_BYTES = 64 * 1024


class SecretSpec(BaseModel):
    model_config = SPEC_CONFIG

    data: str = Field(max_length=4 * MAX_SECRET_BYTES // 3 + 4)

    @field_validator("data")
    @classmethod
    def _base64(cls, value: str) -> str:
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("expected base64-encoded bytes") from None
        return value

    def value(self) -> bytes:
        return base64.b64decode(self.data)


DESCRIPTOR = KindDescriptor(
    name="Secret",
    spec_model=SecretSpec,
    scope=Scope.MESH,
    path="secrets",
    noun="secret",
    alias="secret",
    sync=SyncDirection.GLOBAL_TO_ZONES,
    spec_inline=True,
    description="bytes a mesh's configuration refers to (CA material, credentials)",
)

GLOBAL_DESCRIPTOR = KindDescriptor(
    name="GlobalSecret",
    spec_model=SecretSpec,
    scope=Scope.GLOBAL,
    path="global-secrets",
    noun="globalsecret",
    alias="gsecret",
    sync=SyncDirection.LOCAL,
    spec_inline=True,
    description="bytes the global control plane keeps for itself (signing keys)",
)
