-- Version 3: the state of the change-driven sync (ldapauth.SyncStateStore):
-- one row, the directory's cookie and what the sync keeps with it, opaque
-- to the store and replaced whole after each run. Times are Unix
-- microseconds (UTC).
CREATE TABLE ldap_sync_state (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    state      BLOB NOT NULL,
    updated_at BIGINT NOT NULL
);
