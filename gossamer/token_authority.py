"""Token signing keys and revocations kept in a control plane's store.

Zone tokens are signed by the global with keys held as GlobalSecrets; dataplane tokens
by a zone CP (or the global) with keys held as Secrets of their mesh. Each key is one
secret labelled ``gossamer.io/signing-key: <purpose>``; the newest signs, every one
verifies, so rotation is "add a key, wait for old tokens to expire, delete the old key".
Revoked token ids live in one secret per purpose, as JSON ``{id: expiry}``; entries are
pruned once the token would have expired anyway.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gossamer.errors import InvalidResource, NotFound
from gossamer.model.base import Resource
from gossamer.model.secret import SecretSpec
from gossamer.model.tokentrust import Revocation, TokenTrustSpec, TrustedKey
from gossamer.resources import ResourceManager
from gossamer.tokens import Claims, Clock, SigningKey, TokenRejected, issue, verify

KEY_LABEL = "gossamer.io/signing-key"
REVOCATIONS_LABEL = "gossamer.io/revocations"
MAX_VALIDITY = 10 * 365 * 24 * 3600.0


@dataclass(frozen=True)
class KeyRing:
    signing: SigningKey
    public: Mapping[str, Ed25519PublicKey]
    revoked: Collection[str]


class TokenAuthority:
    """Issues and verifies one purpose of tokens (``zone`` or ``dataplane``)."""

    def __init__(self, manager: ResourceManager, purpose: str, mesh: str = "",
                 clock: Clock = time.time, publish_trust: bool = False) -> None:
        self.manager = manager
        self.purpose = purpose
        self._mesh = mesh
        self._kind = "Secret" if mesh else "GlobalSecret"
        self._clock = clock
        self._publish_trust = publish_trust

    def _secret(self, name: str, data: bytes, label: str) -> Resource:
        return Resource(type=self._kind, name=name, mesh=self._mesh, labels={label: self.purpose},
                        spec=SecretSpec(data=base64.b64encode(data).decode()))

    async def keys(self) -> KeyRing:
        page = await self.manager.list(self._kind, self._mesh or None, {KEY_LABEL: self.purpose})
        keys = []
        for res in page.items:
            created = res.meta.creation_time.timestamp() if res.meta.creation_time else 0.0
            kid = res.name.rsplit("-", 1)[-1]
            keys.append(SigningKey.from_pem(kid, _data(res), created))
        if not keys:
            keys.append(await self.rotate())
        newest = max(keys, key=lambda k: (k.created, k.kid))
        revocations = await self._revocations()
        if self._publish_trust:
            await self._publish(keys, revocations)
        return KeyRing(newest, {k.kid: k.public for k in keys}, set(revocations))

    async def _publish(self, keys: list[SigningKey], revocations: dict[str, int]) -> None:
        """Keep the ``TokenTrust`` others verify with in step (a no-op when unchanged)."""
        spec = TokenTrustSpec(
            keys=[TrustedKey(kid=k.kid, public_key=_public_pem(k)) for k in
                  sorted(keys, key=lambda k: k.kid)],
            revoked=[Revocation(id=i, expires_at=e) for i, e in sorted(revocations.items())])
        await self.manager.apply(Resource(type="TokenTrust", name=self.purpose, spec=spec))

    async def rotate(self) -> SigningKey:
        """Add a new signing key; it signs from now on, older keys keep verifying."""
        key = SigningKey.generate(self._clock())
        await self.manager.apply(self._secret(f"{self.purpose}-token-signing-key-{key.kid}",
                                               key.to_pem(), KEY_LABEL))
        return key

    async def issue(self, subject: str, valid_for: float,
                    scopes: Collection[str] = ()) -> tuple[str, Claims]:
        if not 0 < valid_for <= MAX_VALIDITY:
            raise InvalidResource("a token must be valid for between 1s and 10 years")
        ring = await self.keys()
        return issue(ring.signing, self.purpose, subject, valid_for, scopes=scopes,
                     mesh=self._mesh, now=self._clock)

    async def verify(self, token: str | None, *, subject: str | None = None,
                     scope: str | None = None) -> Claims:
        ring = await self.keys()
        return verify(token, ring.public, kind=self.purpose, revoked=ring.revoked,
                      subject=subject, scope=scope, mesh=self._mesh or None, now=self._clock)

    def _revocations_name(self) -> str:
        return f"{self.purpose}-token-revocations"

    async def _revocations(self) -> dict[str, int]:
        try:
            res = await self.manager.get(self._kind, self._revocations_name(), self._mesh)
        except NotFound:
            return {}
        raw = json.loads(_data(res))
        return {str(k): int(v) for k, v in raw.items()}

    async def revoke(self, token_id: str, expires_at: int | None = None) -> None:
        """Refuse ``token_id`` from now on (kept until it would have expired anyway)."""
        if not token_id or len(token_id) > 128:
            raise InvalidResource("invalid token id")
        now = int(self._clock())
        current = await self._revocations()
        current = {k: v for k, v in current.items() if v > now}
        current[token_id] = expires_at or now + int(MAX_VALIDITY)
        data = json.dumps(current, sort_keys=True).encode()
        await self.manager.apply(self._secret(self._revocations_name(), data, REVOCATIONS_LABEL))
        if self._publish_trust:
            await self.keys()


def _public_pem(key: SigningKey) -> str:
    return key.public.public_bytes(serialization.Encoding.PEM,
                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode()


async def verify_with_trust(manager: ResourceManager, token: str | None, purpose: str, *,
                            subject: str | None = None, scope: str | None = None,
                            now: Clock = time.time) -> Claims:
    """Verify a token signed elsewhere, with the ``TokenTrust`` its signer published."""
    try:
        res = await manager.get("TokenTrust", purpose)
    except NotFound:
        raise TokenRejected("unknown-key", f"no {purpose} token keys have been received from "
                                           "the global yet") from None
    if not isinstance(res.spec, TokenTrustSpec):
        raise TypeError("TokenTrust with a foreign spec")
    keys = {}
    for trusted in res.spec.keys:
        public = serialization.load_pem_public_key(trusted.public_key.encode())
        if isinstance(public, Ed25519PublicKey):
            keys[trusted.kid] = public
    return verify(token, keys, kind=purpose, revoked={r.id for r in res.spec.revoked},
                  subject=subject, scope=scope, now=now)


def _data(res: Resource) -> bytes:
    if not isinstance(res.spec, SecretSpec):
        raise TypeError(f"{res.type} {res.name} is not a secret")
    return res.spec.value()
