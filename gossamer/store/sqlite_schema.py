"""The SQLite store's schema, and the TEMP triggers that keep its event log.

Three tables: ``resources`` (one row per resource), ``events`` (one row per write, keyed
by revision) and ``counters`` (the store-wide revision). The triggers are TEMP triggers,
created by each store's writer connection with its own retention, so the file holds data
only: a write to ``resources`` bumps the counter, appends its event and compacts events
that fell out of the retention window, all in the write's own statement.
"""

from __future__ import annotations

SCHEMA = """
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS resources (
    kind TEXT NOT NULL,
    mesh TEXT NOT NULL,
    name TEXT NOT NULL,
    labels TEXT NOT NULL CHECK (json_valid(labels)),
    spec TEXT NOT NULL CHECK (json_valid(spec)),
    version INTEGER NOT NULL,
    creation_time TEXT NOT NULL,
    modification_time TEXT NOT NULL,
    revision INTEGER NOT NULL,
    PRIMARY KEY (kind, mesh, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    revision INTEGER PRIMARY KEY,
    type TEXT NOT NULL,
    kind TEXT NOT NULL,
    mesh TEXT NOT NULL,
    name TEXT NOT NULL,
    document TEXT NOT NULL CHECK (json_valid(document))
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO counters (name, value) VALUES ('revision', 0);
PRAGMA user_version = 1;
COMMIT;
"""

# The event document of a row, in the shape codec.load_event_resource reads.
_DOCUMENT = ("json_object('labels', json({r}.labels), 'spec', json({r}.spec), "
             "'version', {r}.version, 'creationTime', {r}.creation_time, "
             "'modificationTime', {r}.modification_time, 'revision', {r}.revision)")
_REVISION = "(SELECT value FROM counters WHERE name = 'revision')"


def triggers(retention: int) -> str:
    """The event log, as TEMP triggers of one writer connection."""
    written = """
CREATE TEMP TRIGGER IF NOT EXISTS resource_{type} AFTER {op} ON resources BEGIN
    UPDATE counters SET value = NEW.revision WHERE name = 'revision';
    INSERT INTO events (revision, type, kind, mesh, name, document)
        VALUES (NEW.revision, '{type}', NEW.kind, NEW.mesh, NEW.name, {doc});
    DELETE FROM events WHERE revision <= NEW.revision - {retention};
END;"""
    old = _DOCUMENT.format(r="OLD")
    deleted = f"""
CREATE TEMP TRIGGER IF NOT EXISTS resource_deleted AFTER DELETE ON resources BEGIN
    UPDATE counters SET value = value + 1 WHERE name = 'revision';
    INSERT INTO events (revision, type, kind, mesh, name, document)
        VALUES ({_REVISION}, 'deleted', OLD.kind, OLD.mesh, OLD.name, {old});
    DELETE FROM events WHERE revision <= {_REVISION} - {retention};
END;"""
    doc = _DOCUMENT.format(r="NEW")
    return (written.format(type="created", op="INSERT", doc=doc, retention=retention)
            + written.format(type="updated", op="UPDATE", doc=doc, retention=retention)
            + deleted)
