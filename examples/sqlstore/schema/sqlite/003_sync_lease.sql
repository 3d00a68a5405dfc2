-- Version 3: the sync job's lease, so that of several replicas each
-- scheduling the job only one runs it at a time (Store.AcquireSyncLease).
-- One row per lease name; a holder renews expires_at while it runs, and a
-- crashed holder's row is taken over once expires_at has passed.

CREATE TABLE sync_lease (
    name        TEXT PRIMARY KEY,
    token       TEXT NOT NULL,
    holder      TEXT NOT NULL,
    acquired_at TIMESTAMP NOT NULL,
    expires_at  TIMESTAMP NOT NULL
);
