"""The GUI's sign-in cookie: a short-lived proof of the admin token, never the token.

Signing in is ``POST /gui/session`` with ``Authorization: Bearer <admin token>``: the API's
guard checks the token as for any route, and the answer sets a cookie holding
``<expiry>.<HMAC-SHA256(admin token, expiry)>``. So the cookie can be checked by any
replica that knows the admin token (they share it through the store), it stops working
at its expiry and when the admin token changes, and stealing it never yields the token.

The cookie is ``HttpOnly`` (no script reads it), ``SameSite=Strict`` (no other site's
page sends it) and ``Secure`` when the API speaks TLS. It authorizes only what the GUI
does: a ``GET``/``HEAD`` that carries the ``X-Gossamer-Gui`` header. A plain form or link
from elsewhere cannot add that header, and no cookie ever authorizes a write, so a
forged request gets nothing the browser could not already read.

Browsers share cookies across ports of one host, so the global and the zone CPs on one
machine would overwrite each other's cookie under one name; the name carries a digest of
the admin token, so each control plane keeps its own.

Pure: the clock comes in as ``now`` (Unix seconds).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

COOKIE_PREFIX = "gossamer-gui-"
GUI_HEADER = "x-gossamer-gui"
DEFAULT_LIFETIME = 12 * 3600
READ_METHODS = frozenset({"GET", "HEAD"})


@dataclass(frozen=True)
class GuiSessions:
    """Issues and checks sign-in cookies for one admin token."""

    admin_token: str
    lifetime: int = DEFAULT_LIFETIME

    @property
    def cookie_name(self) -> str:
        tag = self._mac("cookie-name")[:10]
        return COOKIE_PREFIX + tag

    def _mac(self, message: str) -> str:
        return hmac.new(self.admin_token.encode(), f"gossamer-gui:{message}".encode(),
                        hashlib.sha256).hexdigest()

    def issue(self, now: float) -> str:
        """A cookie value valid until ``now + lifetime``."""
        expiry = int(now) + self.lifetime
        return f"{expiry}.{self._mac(str(expiry))}"

    def valid(self, value: str, now: float) -> bool:
        expiry, _, mac = value.partition(".")
        if not expiry.isdigit() or int(expiry) <= now:
            return False
        return hmac.compare_digest(mac.encode(), self._mac(expiry).encode())

    def set_cookie(self, value: str, secure: bool) -> str:
        """The ``Set-Cookie`` header value that signs a browser in."""
        flags = "; Secure" if secure else ""
        return (f"{self.cookie_name}={value}; Max-Age={self.lifetime}; Path=/; HttpOnly; "
                f"SameSite=Strict{flags}")

    def clear_cookie(self, secure: bool) -> str:
        flags = "; Secure" if secure else ""
        return f"{self.cookie_name}=; Max-Age=0; Path=/; HttpOnly; SameSite=Strict{flags}"

    def authorizes(self, method: str, headers: dict[bytes, bytes], now: float) -> bool:
        """Does this request's cookie stand in for the admin token? Only for a GUI read."""
        if method not in READ_METHODS or GUI_HEADER.encode() not in headers:
            return False
        cookies = cookie_values(headers.get(b"cookie", b"").decode("latin-1"))
        value = cookies.get(self.cookie_name)
        return value is not None and self.valid(value, now)


def cookie_values(header: str) -> dict[str, str]:
    """``name=value`` pairs of a ``Cookie`` header (the first of a repeated name wins)."""
    out: dict[str, str] = {}
    for part in header.split(";"):
        name, sep, value = part.partition("=")
        name = name.strip()
        if sep and name and name not in out:
            out[name] = value.strip()
    return out


def is_static(path: str) -> bool:
    """The GUI's own files (its page, scripts, styles) and sign-out need no token: they
    hold no data of the mesh. Every answer with data goes through the API's token check."""
    if path in ("/gui", "/gui/", "/gui/signout"):
        return True
    rest = path.removeprefix("/gui/static/")
    return rest != path and "/" not in rest and ".." not in rest and rest != ""
