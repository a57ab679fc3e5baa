"""The redirect commands' errors: each is one line that says what to do about it.

A bad flag value never gets this far (``proxy.redirect.settings`` parses them and the CLI
reports a usage error); these are the environment's: not root, ``nft`` or ``useradd``
missing (naming the Debian package), a user that does not exist, ``nft`` refusing.
"""

from __future__ import annotations

from gossamer.errors import GossamerError


class RedirectError(GossamerError):
    """Base of the redirect commands' errors: nothing was changed, the command exits 1."""

    title = "cannot redirect"
    http_status = 500


class NotRoot(RedirectError):
    """Writing nftables rules needs CAP_NET_ADMIN in the namespace, creating a user root."""

    caller_fault = True


class ProgramMissing(RedirectError):
    """``nft`` or ``useradd`` is not installed; the message names the Debian package."""

    caller_fault = True


class NoSuchUser(RedirectError):
    """An ``--exclude-uid`` name that is not a user of this host."""

    caller_fault = True
    http_status = 400


class CommandFailed(RedirectError):
    """``nft`` or ``useradd`` ran and failed; its own message is kept."""
