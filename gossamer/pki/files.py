"""Writing key material and public PEM files: atomic replace, secrets 0600 from birth.

Apart from ``gossamer.pki.certs`` (which re-exports both) so that a process that writes a
secret file but never parses a certificate (the sidecar agent's bootstrap) does not load
``cryptography``'s Rust bindings for it.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_secret(path: Path, data: bytes) -> None:
    """Write key material atomically with mode 0600 (never briefly world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def write_public(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
