"""Zone and dataplane tokens: EdDSA (Ed25519) JWTs with a key id, scopes and an id.

The issuer signs with its newest key and names it in the ``kid`` header; verification
accepts any key still in the key ring, so keys rotate by adding a new one and removing
the old one once its tokens have expired. Revocation is by token id (``jti``). This
module is pure: keys, revocations and the clock are passed in; the control planes keep
keys and revocations in their stores (``global_cp.tokens``).

Every verification failure is a ``TokenRejected`` whose ``reason`` names the cause
(missing, malformed, expired, revoked, unknown-key, bad-signature, wrong-subject,
wrong-kind, wrong-scope, wrong-mesh) so the rejected party can be told why.

A dataplane token binds an identity, not just a service: its subject is the service,
and it may also name the one Dataplane it admits (``name``), tags every inbound must
carry (``tags``, vouched for in the certificate) and how many Dataplanes may be live
with it at once (``max_dataplanes``, default 1). A token without these claims (issued
before they existed) binds its service alone and admits one Dataplane.
"""

from __future__ import annotations

import secrets
import sys
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gossamer.errors import Unauthorized

ISSUER = "gossamer"
MAX_TOKEN_LENGTH = 8192
ZONE = "zone"
DATAPLANE = "dataplane"
ZONE_SCOPES = frozenset({"cp", "ingress", "egress"})
# At most this many Dataplanes may be live with one dataplane token.
MAX_DATAPLANES_LIMIT = 10_000

Clock = Callable[[], float]


class TokenRejected(Unauthorized):
    """A token that does not admit its bearer; ``reason`` is a stable keyword."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"token rejected ({reason}): {detail}")
        self.reason = reason


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private: Ed25519PrivateKey
    created: float

    @classmethod
    def generate(cls, now: float) -> SigningKey:
        return cls(kid=secrets.token_hex(8), private=Ed25519PrivateKey.generate(), created=now)

    def to_pem(self) -> bytes:
        return self.private.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption())

    @classmethod
    def from_pem(cls, kid: str, pem: bytes, created: float) -> SigningKey:
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"signing key {kid} is not an Ed25519 key")
        return cls(kid=kid, private=key, created=created)

    @property
    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()


@dataclass(frozen=True, slots=True)
class Claims:
    """What a token says. ``subject`` is the zone name or the dataplane's service; a
    dataplane token's ``name``, ``tags`` and ``max_dataplanes`` bind the rest of the
    identity it admits (see the module docstring)."""

    kind: str
    subject: str
    token_id: str
    issued_at: int
    expires_at: int
    scopes: frozenset[str] = frozenset()
    mesh: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    name: str = ""
    max_dataplanes: int = 1


def issue(key: SigningKey, kind: str, subject: str, valid_for: float, *,
          scopes: Collection[str] = (), mesh: str = "", name: str = "",
          tags: Mapping[str, str] | None = None, max_dataplanes: int = 1,
          now: Clock = time.time) -> tuple[str, Claims]:
    """Sign a new token; returns it with its claims (for the audit log and revocation)."""
    if valid_for <= 0:
        raise ValueError("a token must be valid for a positive duration")
    if not 1 <= max_dataplanes <= MAX_DATAPLANES_LIMIT:
        raise ValueError(f"a token admits between 1 and {MAX_DATAPLANES_LIMIT} dataplanes")
    issued = int(now())
    claims = Claims(kind=kind, subject=subject, token_id=secrets.token_hex(16),
                    issued_at=issued, expires_at=issued + int(valid_for),
                    scopes=frozenset(scopes), mesh=mesh, tags=dict(tags or {}), name=name,
                    max_dataplanes=max_dataplanes)
    payload: dict[str, object] = {
        "iss": ISSUER, "sub": subject, "kind": kind, "jti": claims.token_id,
        "iat": claims.issued_at, "exp": claims.expires_at, "scope": sorted(claims.scopes)}
    if mesh:
        payload["mesh"] = mesh
    if kind == DATAPLANE:
        payload.update(name=name, tags=dict(sorted(claims.tags.items())),
                       maxDataplanes=max_dataplanes)
    token = jwt.encode(payload, key.private, algorithm="EdDSA", headers={"kid": key.kid})
    return token, claims


def peek(token: str | None) -> tuple[str, str]:
    """The ``kind`` and ``mesh`` a token claims, *unverified*: only to pick the key ring
    that verifies it (a dataplane token's mesh) and to word refusals. Raises
    ``TokenRejected`` for what cannot be a token at all."""
    if not token:
        raise TokenRejected("missing", "no token was presented")
    if len(token) > MAX_TOKEN_LENGTH:
        raise TokenRejected("malformed", "token is too long")
    try:
        payload = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise TokenRejected("malformed", f"not a JWT ({exc})") from None
    kind, mesh = payload.get("kind", ""), payload.get("mesh", "")
    if not isinstance(kind, str) or not isinstance(mesh, str):
        raise TokenRejected("malformed", "token claims have the wrong shape")
    return kind, mesh


def verify(token: str | None, keys: Mapping[str, Ed25519PublicKey], *, kind: str,
           revoked: Collection[str] = (), subject: str | None = None,
           scope: str | None = None, mesh: str | None = None,
           now: Clock = time.time) -> Claims:
    """Check a token completely or raise ``TokenRejected`` naming why."""
    if not token:
        raise TokenRejected("missing", "no token was presented")
    if len(token) > MAX_TOKEN_LENGTH:
        raise TokenRejected("malformed", "token is too long")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise TokenRejected("malformed", f"not a JWT ({exc})") from None
    kid = header.get("kid")
    if header.get("alg") != "EdDSA":
        raise TokenRejected("malformed", "token is not signed with EdDSA")
    if not isinstance(kid, str) or kid not in keys:
        raise TokenRejected("unknown-key", f"signed by unknown key {kid!r}")
    try:
        payload = jwt.decode(token, keys[kid], algorithms=["EdDSA"], issuer=ISSUER,
                             options={"require": ["exp", "iat", "jti", "sub"],
                                      "verify_exp": False, "verify_iat": False})
    except jwt.InvalidSignatureError:
        raise TokenRejected("bad-signature", "the signature does not verify") from None
    except jwt.PyJWTError as exc:
        raise TokenRejected("malformed", str(exc)) from None
    claims = _claims(payload)
    if claims.expires_at <= now():
        raise TokenRejected("expired", f"token {claims.token_id} expired")
    if claims.token_id in revoked:
        raise TokenRejected("revoked", f"token {claims.token_id} is revoked")
    if claims.kind != kind:
        raise TokenRejected("wrong-kind", f"a {claims.kind} token, not a {kind} token")
    if subject is not None and claims.subject != subject:
        raise TokenRejected("wrong-subject", f"token is for {claims.subject!r}, not {subject!r}")
    if scope is not None and scope not in claims.scopes:
        raise TokenRejected("wrong-scope", f"token lacks the {scope!r} scope")
    if mesh is not None and claims.mesh != mesh:
        raise TokenRejected("wrong-mesh", f"token is for mesh {claims.mesh!r}, not {mesh!r}")
    return claims


def _claims(payload: Mapping[str, object]) -> Claims:
    scopes = payload.get("scope") or []
    iat, exp = payload.get("iat"), payload.get("exp")
    name, tags = payload.get("name", ""), payload.get("tags", {})
    most = payload.get("maxDataplanes", 1)
    if (not isinstance(scopes, list) or not isinstance(iat, int) or not isinstance(exp, int)
            or not isinstance(name, str) or not isinstance(tags, dict)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items())
            or isinstance(most, bool) or not isinstance(most, int)
            or not 1 <= most <= MAX_DATAPLANES_LIMIT):
        raise TokenRejected("malformed", "token claims have the wrong shape")
    # A zone CP holds the claims of every connected sidecar's token: the names many
    # tokens share (kind, service, mesh, scopes) are interned, one copy for all.
    return Claims(kind=sys.intern(str(payload.get("kind", ""))),
                  subject=sys.intern(str(payload["sub"])),
                  token_id=str(payload["jti"]), issued_at=iat, expires_at=exp,
                  scopes=frozenset(sys.intern(str(s)) for s in scopes) or _NO_SCOPES,
                  mesh=sys.intern(str(payload.get("mesh", ""))),
                  tags=tags or _NO_TAGS, name=sys.intern(name), max_dataplanes=most)


_NO_SCOPES: frozenset[str] = frozenset()
_NO_TAGS: Mapping[str, str] = MappingProxyType({})
