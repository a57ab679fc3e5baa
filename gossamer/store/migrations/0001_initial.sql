-- Resources, the event log and the store revision (DESIGN §7).
--
-- mesh and name sort with the "C" collation so that listing order (and with it the
-- keyset page tokens) is the byte order every backend uses, whatever the database's
-- locale is.

CREATE TABLE resources (
    kind text COLLATE "C" NOT NULL,
    mesh text COLLATE "C" NOT NULL,
    name text COLLATE "C" NOT NULL,
    labels jsonb NOT NULL DEFAULT '{}'::jsonb,
    spec jsonb NOT NULL,
    version bigint NOT NULL CHECK (version > 0),
    creation_time timestamptz NOT NULL,
    modification_time timestamptz NOT NULL,
    revision bigint NOT NULL,
    PRIMARY KEY (kind, mesh, name)
);

-- Label selectors are containment queries (labels @> '{"k": "v"}').
CREATE INDEX resources_labels_idx ON resources USING gin (labels jsonb_path_ops);

CREATE TABLE events (
    revision bigint PRIMARY KEY,
    type text NOT NULL CHECK (type IN ('created', 'updated', 'deleted')),
    kind text NOT NULL,
    mesh text NOT NULL,
    name text NOT NULL,
    document jsonb NOT NULL
);

-- The store revision: one row whose lock every write takes first and holds until it
-- commits, so revisions commit in order and without gaps (a sequence hands out numbers
-- at nextval time, so a watcher could read revision n+1 before n commits).
CREATE TABLE store_revision (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    value bigint NOT NULL
);
INSERT INTO store_revision (singleton, value) VALUES (true, 0);

-- Each event wakes the watchers of every store on this database at commit.
CREATE FUNCTION gossamer_notify_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('gossamer_events', NEW.revision::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER events_notify AFTER INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION gossamer_notify_event();
