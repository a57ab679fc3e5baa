"""A control-plane replica's stable id: the same across restarts on the same data dir.

The election's lease holder is new in every process (two processes must never share a
term); what a replica *owns* in the store — the sidecars registered through it, its
record of the zones' insights — is named by this id instead, so a restart takes its own
back rather than leaving an orphan behind.
"""

from __future__ import annotations

import secrets
import socket
from pathlib import Path

REPLICA_FILE = "replica-id"


def replica_id(directory: Path) -> str:
    """This replica's id, kept in ``directory/replica-id`` (made at first use)."""
    path = directory / REPLICA_FILE
    try:
        found = path.read_text().strip()
    except FileNotFoundError:
        found = ""
    if found:
        return found
    made = f"{socket.gethostname()[:40]}-{secrets.token_hex(4)}".lower()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_text(made + "\n")
    return made
