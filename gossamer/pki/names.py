"""Names of the resources the CAs derive from (mesh, backend, generation, zone): one name
per tuple, never shared.

The first names were plain joins (``ca-<mesh>-<backend>``, ``-g<N>``,
``zone-ca-key-<mesh>-next``, ``<zone>.<mesh>``), and since mesh, backend and zone names
may contain ``-`` and ``.`` two tuples could share one: (``a``, ``b-c``) and (``a-b``,
``c``) named one root, and mesh ``a``'s pending zone key was mesh ``a-next``'s current
one. A name is now a readable prefix (cut to fit the 253-character limit) followed by a
digest of the tuple: the tuple's parts are joined with NUL (which no name contains), so
the digest's input is injective, and 128 bits of SHA-256 make a collision as unlikely as
guessing a key. The prefixes ``ca.`` and ``zone-ca-key.`` cannot begin any old name (old
ones continue with ``-``), so a new name is never an old name of another tuple; the old
names are still produced here so that stored material can be found and moved
(``legacy_*``).

Pure: no I/O.
"""

from __future__ import annotations

import hashlib

from gossamer.model.fields import MAX_NAME_LENGTH

DIGEST_CHARS = 32  # 128 bits of SHA-256, hex


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:DIGEST_CHARS]


def _named(prefix: str, readable: str, digest: str) -> str:
    """``<prefix><readable>.<digest>``, the readable part cut so the whole fits a name."""
    room = MAX_NAME_LENGTH - len(prefix) - 1 - len(digest)
    return f"{prefix}{readable[:room]}.{digest}"


def root_secret_name(mesh: str, backend: str, generation: int) -> str:
    """The GlobalSecret holding a builtin root and its key."""
    if generation < 0:
        raise ValueError("a root generation is 0 or more")
    return _named("ca.", f"{mesh}.{backend}.g{generation}",
                  _digest("root", mesh, backend, str(generation)))


def zone_key_secret_name(mesh: str, pending: bool) -> str:
    """The GlobalSecret holding a zone's intermediate key for a mesh: the current one, or
    the pending one a renewal asks with."""
    state = "next" if pending else "current"
    return _named("zone-ca-key.", f"{mesh}.{state}", _digest("zone-key", mesh, state))


def zone_certificate_name(zone: str, mesh: str) -> str:
    """The ZoneCertificate the mesh's signer publishes for one zone."""
    return _named("", f"{zone}.{mesh}", _digest("zone-certificate", zone, mesh))


# -- the names stores had before (read once, then moved) ------------------------------------


def legacy_root_secret_name(mesh: str, backend: str, generation: int) -> str:
    base = f"ca-{mesh}-{backend}"
    return base if generation == 0 else f"{base}-g{generation}"


def legacy_zone_key_secret_name(mesh: str, pending: bool) -> str:
    return f"zone-ca-key-{mesh}" + ("-next" if pending else "")


def legacy_zone_certificate_name(zone: str, mesh: str) -> str:
    return f"{zone}.{mesh}"
