"""The PostgreSQL schema, as numbered SQL steps: ``NNNN_what.sql`` in this folder.

A step is applied once, in order, inside the migration transaction that
``gossamer.store.postgres.migrate`` holds an advisory lock for; ``schema_migrations``
records which steps a database has. Never edit a released step: add the next one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

_STEP_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def steps() -> list[Migration]:
    """Every step shipped with this Gossamer, oldest first."""
    found = []
    for entry in resources.files("gossamer.store.migrations").iterdir():
        match = _STEP_RE.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migration steps must be numbered 1..n without gaps: {versions}")
    return found
