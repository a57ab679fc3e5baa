-- Leases for leader election (gossamer.election): one row per lease. epoch is the fencing
-- token: it grows whenever the lease changes hands or lapses, and a fenced write checks
-- its row (FOR SHARE, inside the write's transaction) so no write of an older term
-- commits after a newer term began. expires_at is on the database's clock only.

CREATE TABLE leases (
    name text PRIMARY KEY,
    holder text NOT NULL,
    epoch bigint NOT NULL CHECK (epoch > 0),
    expires_at timestamptz NOT NULL
);
