-- Version 3: who holds the sync job's lease, and since when
-- (Store.AcquireSyncLease). On PostgreSQL the lease itself is a
-- session-level advisory lock, released by the server when its holder's
-- connection ends, crashed or not; this row only names the holder for the
-- message of a run refused, and is overwritten by the next holder.

CREATE TABLE sync_lease (
    name        TEXT PRIMARY KEY,
    token       TEXT NOT NULL,
    holder      TEXT NOT NULL,
    acquired_at TIMESTAMP NOT NULL,
    expires_at  TIMESTAMP NOT NULL
);
