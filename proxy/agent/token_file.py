"""The agent's token file: what a valid-looking token is, and when to read the file again.

A token (dataplane token for a sidecar, zone token for an ingress) admits its agent's
Session and its Envoy's ADS stream only until it expires or is revoked: then the zone
CP ends both (``zone_cp.token_expiry``). So the agent does not read ``--token-file``
once: it reads it again whenever it (re)connects its Session, before each
``SignCertificate``, on SIGHUP and on a timer before the token in use expires
(``proxy.agent.token_refresh``). This module is the pure part of that:

* ``parse`` says whether a file's bytes hold a token at all (a JWT alone, bounded) and
  raises ``TokenFileError`` naming the file otherwise; what it holds is checked by the
  control plane, never here;
* ``lifetime`` reads ``iat``/``exp`` *unverified*: only to schedule the next read;
* ``next_check`` is that schedule: at ``CHECK_AT`` (80 %) of the token's life, then
  halfway to expiry each time the file still holds the same token (so an operator who
  writes the new file late is still picked up before the end), never more often than
  ``MIN_CHECK``; no timer once the token has expired (the Session, refused, reconnects
  and reads the file each time) or when it carries no ``exp``.

No clock is read here (``now`` is passed in); ``read`` is the one function that does I/O.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proxy.agent.errors import InputError

MAX_TOKEN_FILE_BYTES = 64 << 10
CHECK_AT = 0.8
MIN_CHECK = 1.0
# How a refusal names what the file should hold (``what``).
DATAPLANE_TOKEN = "a dataplane token (a JWT from `gossamer token dataplane`)"
INGRESS_TOKEN = "a zone token (a JWT from `gossamer token zone --scope ingress`)"
EGRESS_TOKEN = "a zone token (a JWT from `gossamer token zone --scope egress`)"


class TokenFileError(InputError):
    """The token file cannot be read or does not hold a token (the operator's to fix)."""


@dataclass(frozen=True)
class Lifetime:
    """A token's ``iat`` and ``exp`` (epoch seconds), as it claims them, unverified."""

    issued_at: float | None
    expires_at: float | None


def parse(raw: bytes, path: Path, what: str = "a token") -> str:
    """The token in a file's bytes: one JWT (three dot-separated parts), no whitespace
    inside, at most 64 KiB. ``what`` words the refusal (``a dataplane token (...)``)."""
    text = raw.decode("utf-8", errors="replace").strip()
    if len(raw) > MAX_TOKEN_FILE_BYTES or not text or text.count(".") != 2 or any(
            c.isspace() for c in text):
        state = "is empty" if not text else "does not hold"
        raise TokenFileError(f"the token file {path} {state}" +
                             ("" if not text else f" {what}"))
    return text


def read(path: Path, what: str = "a token") -> str:
    """``parse`` of the file at ``path`` (``TokenFileError`` if it cannot be read)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_TOKEN_FILE_BYTES + 1)
    except OSError as exc:
        raise TokenFileError(f"cannot read the token file {path}: "
                             f"{exc.strerror or exc}") from None
    return parse(raw, path, what)


def lifetime(token: str) -> Lifetime:
    """``iat``/``exp`` of ``token`` without checking its signature (the CP does that);
    ``None`` for a claim that is missing or not a number, both for a token that does
    not decode."""
    payload = claims(token)
    if payload is None:
        return Lifetime(None, None)

    def number(name: str) -> float | None:
        value = payload.get(name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return float(value)

    return Lifetime(number("iat"), number("exp"))


def claims(token: str) -> dict[str, Any] | None:
    """The JWT's payload as a dict, unverified, or None if it does not decode. Read by
    hand (base64url JSON, RFC 7519 §7.2) rather than with PyJWT, whose import loads
    ``cryptography`` into every sidecar agent for a check the CP makes anyway."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        header = json.loads(_b64url(parts[0]))
        payload = json.loads(_b64url(parts[1]))
    except (ValueError, binascii.Error):  # not base64url, not UTF-8, not JSON
        return None
    return payload if isinstance(header, dict) and isinstance(payload, dict) else None


def _b64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def next_check(now: float, life: Lifetime) -> float | None:
    """Seconds from ``now`` until the token file should be read again because the token
    in use nears its end, or ``None`` for no timer (see the module's notes)."""
    exp = life.expires_at
    if exp is None or exp <= now:
        return None
    if life.issued_at is not None and life.issued_at < exp:
        due = life.issued_at + (exp - life.issued_at) * CHECK_AT
        if due > now:
            return max(due - now, MIN_CHECK)
    return max((exp - now) / 2, MIN_CHECK)
