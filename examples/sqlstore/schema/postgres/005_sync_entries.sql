-- Version 5: what the change-driven sync keeps of each directory entry
-- (ldapauth.ChangeStore): its state (DN and username, opaque to the store)
-- by entry ID (entryUUID), a row each, so that an incremental run reads
-- and writes only the rows of the entries that changed.
CREATE TABLE ldap_sync_entries (
    entry_id TEXT PRIMARY KEY,
    state    BYTEA NOT NULL
);
