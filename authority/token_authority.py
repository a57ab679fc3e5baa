"""Token signing keys kept by the control plane that signs, and verification anywhere.

Zone tokens are signed by the global, a mesh's dataplane tokens by the control plane that
owns the mesh (the global in a federation, a standalone zone for itself). The private
keys never leave that control plane: each is a GlobalSecret (a kind that never syncs)
labelled ``gossamer.io/signing-key: <purpose>`` (and ``gossamer.io/mesh`` for dataplane
keys); the newest signs, every one verifies, so rotation is "add a key, wait for old
tokens to expire, delete the old key". The signer publishes the public keys as a
``TokenTrust`` per (purpose, mesh) (``trust_name``), which the sync takes to every zone.

Verification: a control plane holding a ``TokenTrust`` the global sent it (labelled
``gossamer.io/origin: global``) did not sign those tokens and verifies with it; the
signer verifies with its own keys. A verifier built with ``signer=False`` (a federated
zone's dataplane tokens) never reads its own keys: without the global's trust every
token is an ``unknown-key``, so keys left in a zone's store (or planted there) admit
nothing. Neither creates a key to verify: only ``issue``,
``keys`` and ``rotate`` do. A revoked token is a ``TokenRevocation`` row named from
(purpose, mesh, token id), so "revoked?" is one store get however many there are.

The signer writes its ``TokenTrust`` only when the keys differ from what is stored, as a
compare-and-set on the version it read *before* reading the keys: a writer that read
older keys finds the version moved and reads again, so a stale view never overwrites a
newer one and concurrent callers see no ``Conflict``. Writers on one authority take
turns (a lock), so only other authorities or processes sharing the store ever collide,
and ``Conflict`` escapes only after ``WRITE_ATTEMPTS`` lost rounds. First writes are
create-only, so two of them at once cannot overwrite each other either.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gossamer.errors import AlreadyExists, Conflict, FieldError, InvalidResource, NotFound
from gossamer.model.base import Resource
from gossamer.model.labels import KEY_LABEL, KID_LABEL, MESH_LABEL, ORIGIN_LABEL
from gossamer.model.secret import SecretSpec
from gossamer.model.tokenrevocation import (
    TOKEN_ID_PATTERN,
    TokenRevocationSpec,
    revocation_name,
    scoped_name,
)
from gossamer.model.tokentrust import TokenTrustSpec, TrustedKey, trust_name
from gossamer.resources import ResourceManager
from gossamer.tokens import Claims, Clock, SigningKey, TokenRejected, issue, verify

MAX_VALIDITY = 10 * 365 * 24 * 3600.0
# Compare-and-set rounds before a write of the TokenTrust or a revocation gives up with
# Conflict: each lost round means another writer changed it in between.
WRITE_ATTEMPTS = 5
_TOKEN_ID = re.compile(TOKEN_ID_PATTERN)


@dataclass(frozen=True)
class KeyRing:
    signing: SigningKey
    public: Mapping[str, Ed25519PublicKey]


def key_selector(purpose: str, mesh: str = "") -> dict[str, str]:
    """The labels of the signing keys of one purpose (and mesh)."""
    return {KEY_LABEL: purpose, **({MESH_LABEL: mesh} if mesh else {})}


def key_secret_name(purpose: str, mesh: str, kid: str) -> str:
    """Zone keys keep their historical name; a mesh's keys are named injectively."""
    if not mesh:
        return f"{purpose}-token-signing-key-{kid}"
    return scoped_name(f"{purpose}-token-signing-key", mesh, kid)


class TokenAuthority:
    """Issues and verifies one purpose of tokens (``zone`` or ``dataplane``, per mesh)."""

    def __init__(self, manager: ResourceManager, purpose: str, mesh: str = "",
                 clock: Clock = time.time, publish_trust: bool = True,
                 signer: bool = True) -> None:
        self.manager = manager
        self.purpose = purpose
        self._mesh = mesh
        self._clock = clock
        self._publish_trust = publish_trust
        self._signer = signer  # False: verify only with the trust the global sent
        self.trust_name = trust_name(purpose, mesh)
        # One authority's writers take turns, so they never collide with each other.
        self._publish_lock = asyncio.Lock()
        self._revoke_lock = asyncio.Lock()

    async def keys(self) -> KeyRing:
        """The signing key and every verifying key (a first key is made when there is
        none); a publishing authority also brings its TokenTrust in step. Signers only."""
        if not self._publish_trust:
            ring, _ = await self._read()
            return ring
        async with self._publish_lock:
            return await self._publish()

    async def _own_keys(self) -> list[SigningKey]:
        page = await self.manager.list("GlobalSecret", None,
                                       key_selector(self.purpose, self._mesh))
        keys = []
        for res in page.items:
            created = res.meta.creation_time.timestamp() if res.meta.creation_time else 0.0
            kid = res.labels.get(KID_LABEL) or res.name.rsplit("-", 1)[-1]
            keys.append(SigningKey.from_pem(kid, _data(res), created))
        return keys

    async def _read(self) -> tuple[KeyRing, TokenTrustSpec]:
        keys = await self._own_keys()
        if not keys:
            keys.append(await self._add_key())
        newest = max(keys, key=lambda k: (k.created, k.kid))
        trust = TokenTrustSpec(keys=[TrustedKey(kid=k.kid, public_key=_public_pem(k))
                                     for k in sorted(keys, key=lambda k: k.kid)])
        return KeyRing(newest, {k.kid: k.public for k in keys}), trust

    async def _publish(self) -> KeyRing:
        """Read the keys and store them as the ``TokenTrust`` unless it already says the
        same (see the module docstring)."""
        for _ in range(WRITE_ATTEMPTS):
            published = await self._get("TokenTrust", self.trust_name)
            ring, trust = await self._read()
            if published is not None and published.spec == trust:
                return ring
            if await self._compare_and_set(
                    Resource(type="TokenTrust", name=self.trust_name, spec=trust), published):
                return ring
        raise Conflict(f"the {self.trust_name} TokenTrust kept changing while it was being "
                       "published; retry")

    async def _get(self, kind: str, name: str, mesh: str = "") -> Resource | None:
        try:
            return await self.manager.get(kind, name, mesh)
        except NotFound:
            return None

    async def _compare_and_set(self, res: Resource, read: Resource | None) -> bool:
        """Write ``res`` over the version ``read`` (None: there was none, so create it).
        False when another writer changed (or created) it since: read again and retry. A
        refusal for any other reason (the store failing) is raised."""
        try:
            if read is None:  # create-only: never over a row another writer just made
                await self.manager.store.create(res)
            else:
                await self.manager.apply(res, read.meta.version)
        except (Conflict, AlreadyExists, NotFound):
            if _version(await self._get(res.type, res.name, res.mesh)) == _version(read):
                raise
            return False
        return True

    async def _add_key(self) -> SigningKey:
        key = SigningKey.generate(self._clock())
        await self.manager.apply(Resource(
            type="GlobalSecret", name=key_secret_name(self.purpose, self._mesh, key.kid),
            labels={**key_selector(self.purpose, self._mesh), KID_LABEL: key.kid},
            spec=SecretSpec(data=base64.b64encode(key.to_pem()).decode())))
        return key

    async def rotate(self) -> SigningKey:
        """Add a new signing key; it signs from now on, older keys keep verifying."""
        key = await self._add_key()
        if self._publish_trust:
            await self.keys()
        return key

    async def issue(self, subject: str, valid_for: float,
                    scopes: Collection[str] = (), *, name: str = "",
                    tags: Mapping[str, str] | None = None,
                    max_dataplanes: int = 1) -> tuple[str, Claims]:
        """Sign a token; ``name``, ``tags`` and ``max_dataplanes`` bind a dataplane
        token's identity beyond its service (``gossamer.tokens``)."""
        if not 0 < valid_for <= MAX_VALIDITY:
            raise InvalidResource("a token must be valid for between 1s and 10 years")
        ring = await self.keys()
        try:
            return issue(ring.signing, self.purpose, subject, valid_for, scopes=scopes,
                         mesh=self._mesh, name=name, tags=tags,
                         max_dataplanes=max_dataplanes, now=self._clock)
        except ValueError as exc:  # the request's fault (a bound on the claims)
            raise InvalidResource(str(exc)) from None

    async def verify(self, token: str | None, *, subject: str | None = None,
                     scope: str | None = None) -> Claims:
        """Check a token (raises ``TokenRejected`` naming why); never makes a key."""
        trust = await self._get("TokenTrust", self.trust_name)
        if trust is not None and trust.labels.get(ORIGIN_LABEL) == "global":
            keys = _trusted_keys(trust)  # signed at the global: this CP holds no key
        elif self._signer:
            keys = {k.kid: k.public for k in await self._own_keys()}
        else:
            raise TokenRejected("unknown-key", f"no {self.trust_name} token keys have been "
                                               "received from the global yet")
        claims = verify(token, keys, kind=self.purpose, subject=subject, scope=scope,
                        mesh=self._mesh or None, now=self._clock)
        await refuse_revoked(self.manager, claims)
        return claims

    def revocation(self, token_id: str, expires_at: int | None) -> TokenRevocationSpec:
        """The revocation to store, or ``InvalidResource`` naming the bad field.

        ``expires_at`` (the token's expiry, unix seconds) must be ahead of now and no
        further than the longest a token lives; without it the row is kept that long."""
        now = int(self._clock())
        errors = []
        if not isinstance(token_id, str) or not _TOKEN_ID.match(token_id):
            errors.append(FieldError("id", "expected a token id as issued: lower-case "
                                           "letters, digits and '-', at most 128"))
        if expires_at is None:
            expires_at = now + int(MAX_VALIDITY)
        elif expires_at <= now:
            errors.append(FieldError("expiresAt", f"{expires_at} is not after now ({now}): "
                                     "a token past its expiry is refused anyway"))
        elif expires_at > now + MAX_VALIDITY:
            errors.append(FieldError("expiresAt", f"{expires_at} is further than the "
                                     "longest a token lives (10 years)"))
        if errors:
            raise InvalidResource("invalid revocation", errors)
        return TokenRevocationSpec(purpose=self.purpose, mesh=self._mesh, token_id=token_id,
                                   expires_at=expires_at)

    async def revoke(self, token_id: str, expires_at: int | None = None) -> None:
        """Refuse ``token_id`` from now on: one ``TokenRevocation`` row, which the signer
        drops once the token would have expired anyway. Revoking again keeps the later
        expiry; nothing is stored when the input is refused."""
        spec = self.revocation(token_id, expires_at)
        row = Resource(type="TokenRevocation", name=spec.name, spec=spec)
        async with self._revoke_lock:
            for _ in range(WRITE_ATTEMPTS):
                stored = await self._get("TokenRevocation", row.name)
                if stored is not None and _expiry(stored) >= spec.expires_at:
                    return
                if await self._compare_and_set(row, stored):
                    return
        raise Conflict(f"the revocation of token {token_id} kept changing; retry")


def _version(res: Resource | None) -> int:
    return res.meta.version if res is not None else 0


def _expiry(res: Resource) -> int:
    return res.spec.expires_at if isinstance(res.spec, TokenRevocationSpec) else 0


def _public_pem(key: SigningKey) -> str:
    return key.public.public_bytes(serialization.Encoding.PEM,
                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _trusted_keys(res: Resource) -> dict[str, Ed25519PublicKey]:
    if not isinstance(res.spec, TokenTrustSpec):
        raise TypeError("TokenTrust with a foreign spec")
    keys = {}
    for trusted in res.spec.keys:
        public = serialization.load_pem_public_key(trusted.public_key.encode())
        if isinstance(public, Ed25519PublicKey):
            keys[trusted.kid] = public
    return keys


async def refuse_revoked(manager: ResourceManager, claims: Claims) -> None:
    """``TokenRejected("revoked")`` if the token has a ``TokenRevocation``: one get."""
    name = revocation_name(claims.kind, claims.mesh, claims.token_id)
    try:
        await manager.get("TokenRevocation", name)
    except NotFound:
        return
    raise TokenRejected("revoked", f"token {claims.token_id} is revoked")


async def verify_with_trust(manager: ResourceManager, token: str | None, purpose: str, *,
                            mesh: str = "", subject: str | None = None,
                            scope: str | None = None, now: Clock = time.time) -> Claims:
    """Verify a token signed elsewhere, with the ``TokenTrust`` its signer published."""
    try:
        res = await manager.get("TokenTrust", trust_name(purpose, mesh))
    except NotFound:
        raise TokenRejected("unknown-key", f"no {purpose} token keys have been received from "
                                           "the global yet") from None
    claims = verify(token, _trusted_keys(res), kind=purpose, subject=subject, scope=scope,
                    mesh=mesh or None, now=now)
    await refuse_revoked(manager, claims)
    return claims


def _data(res: Resource) -> bytes:
    if not isinstance(res.spec, SecretSpec):
        raise TypeError(f"{res.type} {res.name} is not a secret")
    return res.spec.value()
