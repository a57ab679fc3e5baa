"""The admin token: generated once, kept in a 0600 file, checked in constant time."""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from gossamer.errors import Unauthorized

TOKEN_FILE = "admin-token"


def load_or_create_admin_token(data_dir: Path) -> str:
    """Read ``<data_dir>/admin-token``, creating it (0600, 256 random bits) on first start."""
    path = data_dir / TOKEN_FILE
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        token = path.read_text().strip()
        if not token:
            raise Unauthorized(f"{path} is empty; delete it to generate a new token") from None
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
        return token
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


class BearerAuth:
    """The check of ``Authorization: Bearer <admin token>``, on the header alone.

    ``gossamer.api.guard.ApiGuard`` runs it before a request's body is read; it is a
    plain function of the header so that nothing about the request has to be parsed
    first."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()

    def refusal(self, header: str) -> str | None:
        """Why ``header`` does not carry the admin token, or ``None`` when it does."""
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return "this API needs the admin token: send 'Authorization: Bearer <token>'"
        if not hmac.compare_digest(value.strip().encode(), self._token):
            return "the bearer token is not valid"
        return None
