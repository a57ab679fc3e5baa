"""Zone and dataplane tokens: each way a token can be wrong is refused with its reason."""

from __future__ import annotations

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gossamer.tokens import ZONE, SigningKey, TokenRejected, issue, verify

NOW = 1_800_000_000.0


def clock(t: float = NOW) -> float:
    return t


@pytest.fixture
def key() -> SigningKey:
    return SigningKey.generate(NOW)


def test_valid_token_round_trip(key: SigningKey) -> None:
    token, claims = issue(key, ZONE, "east", 3600, scopes=["cp"], now=clock)
    got = verify(token, {key.kid: key.public}, kind=ZONE, subject="east", scope="cp", now=clock)
    assert got == claims
    assert got.expires_at == int(NOW) + 3600
    assert jwt.get_unverified_header(token)["kid"] == key.kid


def test_old_key_keeps_verifying_after_rotation(key: SigningKey) -> None:
    old_token, _ = issue(key, ZONE, "east", 3600, now=clock)
    new = SigningKey.generate(NOW + 10)
    ring = {key.kid: key.public, new.kid: new.public}
    assert verify(old_token, ring, kind=ZONE, now=clock).subject == "east"
    with pytest.raises(TokenRejected) as info:
        verify(old_token, {new.kid: new.public}, kind=ZONE, now=clock)
    assert info.value.reason == "unknown-key"


def reason(token: str | None, key: SigningKey, **kw: object) -> str:
    with pytest.raises(TokenRejected) as info:
        verify(token, {key.kid: key.public}, **kw)  # type: ignore[arg-type]
    return info.value.reason


def test_each_defect_has_its_reason(key: SigningKey) -> None:
    token, claims = issue(key, ZONE, "east", 60, scopes=["cp"], now=clock)
    assert reason(None, key, kind=ZONE, now=clock) == "missing"
    assert reason("garbage", key, kind=ZONE, now=clock) == "malformed"
    assert reason("x" * 10_000, key, kind=ZONE, now=clock) == "malformed"
    assert reason(token, key, kind=ZONE, now=lambda: NOW + 61) == "expired"
    assert reason(token, key, kind=ZONE, revoked={claims.token_id}, now=clock) == "revoked"
    assert reason(token, key, kind=ZONE, subject="west", now=clock) == "wrong-subject"
    assert reason(token, key, kind="dataplane", now=clock) == "wrong-kind"
    assert reason(token, key, kind=ZONE, scope="ingress", now=clock) == "wrong-scope"


def test_forged_tokens_are_refused(key: SigningKey) -> None:
    # Same kid, different private key: the signature does not verify.
    forger = SigningKey(kid=key.kid, private=Ed25519PrivateKey.generate(), created=NOW)
    forged, _ = issue(forger, ZONE, "east", 60, now=clock)
    assert reason(forged, key, kind=ZONE, now=clock) == "bad-signature"
    # An HS256 token with the same claims is not accepted as EdDSA.
    hs = jwt.encode({"sub": "east", "kind": ZONE, "jti": "x", "iat": int(NOW),
                     "exp": int(NOW) + 60, "iss": "gossamer"}, "secret" * 8, algorithm="HS256",
                    headers={"kid": key.kid})
    assert reason(hs, key, kind=ZONE, now=clock) == "malformed"
    # A token whose claims were edited after signing.
    token, _ = issue(key, ZONE, "east", 60, now=clock)
    head, _body, sig = token.split(".")
    other, _ = issue(key, ZONE, "west", 60, now=clock)
    assert reason(".".join([head, other.split(".")[1], sig]), key, kind=ZONE,
                  now=clock) == "bad-signature"


def test_key_pem_round_trip(key: SigningKey) -> None:
    again = SigningKey.from_pem(key.kid, key.to_pem(), key.created)
    token, _ = issue(again, ZONE, "east", 60, now=clock)
    assert verify(token, {key.kid: key.public}, kind=ZONE, now=clock).subject == "east"
