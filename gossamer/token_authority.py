"""Token signing keys and revocations kept in a control plane's store.

Zone tokens are signed by the global with keys held as GlobalSecrets; dataplane tokens
by a zone CP (or the global) with keys held as Secrets of their mesh. Each key is one
secret labelled ``gossamer.io/signing-key: <purpose>``; the newest signs, every one
verifies, so rotation is "add a key, wait for old tokens to expire, delete the old key".
Revoked token ids live in one secret per purpose, as JSON ``{id: expiry}``; entries are
pruned once the token would have expired anyway.

An authority that publishes its ``TokenTrust`` (the global's zone tokens) writes it only
when the keys or revocations differ from what is stored, as a compare-and-set on the
version it read *before* reading them: a writer that read older keys or revocations
finds the version moved and reads again, so a stale view never overwrites a newer one
and concurrent callers see no ``Conflict``. ``revoke`` updates the revocations secret
the same way, so concurrent revocations never overwrite each other. Writers on one
authority take turns (a lock), so only other authorities or processes sharing the store
ever collide, and ``Conflict`` escapes only after ``WRITE_ATTEMPTS`` lost rounds. One
window stays open, two *first* writes at once (see ``_compare_and_set``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gossamer.errors import AlreadyExists, Conflict, InvalidResource, NotFound
from gossamer.model.base import Resource
from gossamer.model.secret import SecretSpec
from gossamer.model.tokentrust import Revocation, TokenTrustSpec, TrustedKey
from gossamer.resources import ResourceManager
from gossamer.tokens import Claims, Clock, SigningKey, TokenRejected, issue, verify

KEY_LABEL = "gossamer.io/signing-key"
REVOCATIONS_LABEL = "gossamer.io/revocations"
MAX_VALIDITY = 10 * 365 * 24 * 3600.0
# Compare-and-set rounds before a write of the TokenTrust or the revocations gives up
# with Conflict: each lost round means another writer changed it in between.
WRITE_ATTEMPTS = 5


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
        # One authority's writers take turns, so they never collide with each other.
        self._publish_lock = asyncio.Lock()
        self._revoke_lock = asyncio.Lock()

    def _secret(self, name: str, data: bytes, label: str) -> Resource:
        return Resource(type=self._kind, name=name, mesh=self._mesh, labels={label: self.purpose},
                        spec=SecretSpec(data=base64.b64encode(data).decode()))

    async def keys(self) -> KeyRing:
        """The signing key, every verifying key and the revoked ids (a first key is made
        when there is none); publishing authorities also bring the TokenTrust in step."""
        if not self._publish_trust:
            ring, _ = await self._read()
            return ring
        async with self._publish_lock:
            return await self._publish()

    async def _read(self) -> tuple[KeyRing, TokenTrustSpec]:
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
        trust = TokenTrustSpec(
            keys=[TrustedKey(kid=k.kid, public_key=_public_pem(k)) for k in
                  sorted(keys, key=lambda k: k.kid)],
            revoked=[Revocation(id=i, expires_at=e) for i, e in sorted(revocations.items())])
        return KeyRing(newest, {k.kid: k.public for k in keys}, set(revocations)), trust

    async def _publish(self) -> KeyRing:
        """Read the keys and revocations and store them as the ``TokenTrust`` unless it
        already says the same (see the module docstring)."""
        for _ in range(WRITE_ATTEMPTS):
            published = await self._get("TokenTrust", self.purpose)
            ring, trust = await self._read()
            if published is not None and published.spec == trust:
                return ring
            if await self._compare_and_set(
                    Resource(type="TokenTrust", name=self.purpose, spec=trust), published):
                return ring
        raise Conflict(f"the {self.purpose} TokenTrust kept changing while it was being "
                       "published; retry")

    async def _get(self, kind: str, name: str, mesh: str = "") -> Resource | None:
        try:
            return await self.manager.get(kind, name, mesh)
        except NotFound:
            return None

    async def _compare_and_set(self, res: Resource, read: Resource | None) -> bool:
        """Write ``res`` over the version ``read`` (None: there was none). False when
        another writer changed it since: read again and retry. A refusal for any other
        reason (a federated zone's write guard, the store failing) is raised.

        With ``read`` None, ``ResourceManager.apply`` (which has no create-only mode)
        would update a resource another writer created since: a concurrent *first*
        write is the one window left open."""
        try:
            await self.manager.apply(res, read.meta.version if read is not None else None)
        except (Conflict, AlreadyExists, NotFound):
            if _version(await self._get(res.type, res.name, res.mesh)) == _version(read):
                raise
            return False
        return True

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
        return _revoked(await self._get(self._kind, self._revocations_name(), self._mesh))

    async def revoke(self, token_id: str, expires_at: int | None = None) -> None:
        """Refuse ``token_id`` from now on (kept until it would have expired anyway).

        The revocations are one secret, written by compare-and-set like the TokenTrust:
        a concurrent revocation is never overwritten."""
        if not token_id or len(token_id) > 128:
            raise InvalidResource("invalid token id")
        async with self._revoke_lock:
            await self._add_revocation(token_id, expires_at)
        if self._publish_trust:
            await self.keys()

    async def _add_revocation(self, token_id: str, expires_at: int | None) -> None:
        for _ in range(WRITE_ATTEMPTS):
            now = int(self._clock())
            stored = await self._get(self._kind, self._revocations_name(), self._mesh)
            current = {k: v for k, v in _revoked(stored).items() if v > now}
            current[token_id] = expires_at or now + int(MAX_VALIDITY)
            data = json.dumps(current, sort_keys=True).encode()
            if await self._compare_and_set(
                    self._secret(self._revocations_name(), data, REVOCATIONS_LABEL), stored):
                return
        raise Conflict(f"the {self.purpose} token revocations kept changing; retry")


def _version(res: Resource | None) -> int:
    return res.meta.version if res is not None else 0


def _revoked(res: Resource | None) -> dict[str, int]:
    if res is None:
        return {}
    raw = json.loads(_data(res))
    return {str(k): int(v) for k, v in raw.items()}


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
