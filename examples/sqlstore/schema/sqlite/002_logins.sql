-- Version 2: what a login server shares between its replicas. Times are
-- Unix microseconds (UTC), compared as integers in both databases.

-- Sessions: only the SHA-256 of the session ID is stored, so a copy of the
-- database signs nobody in. A user removed from ldap_users loses them all.
CREATE TABLE login_sessions (
    id_hash      TEXT PRIMARY KEY,
    username_key TEXT NOT NULL REFERENCES ldap_users (username_key) ON DELETE CASCADE,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);

CREATE INDEX login_sessions_user ON login_sessions (username_key, created_at);

CREATE INDEX login_sessions_expiry ON login_sessions (expires_at);

-- Failed-login counters, one row per key (a username, a client address).
CREATE TABLE login_throttle (
    throttle_key TEXT PRIMARY KEY,
    failures     INTEGER NOT NULL,
    last_failure BIGINT NOT NULL
);

CREATE INDEX login_throttle_last ON login_throttle (last_failure);

-- Client addresses a user signed in from: a known client keeps a margin
-- when someone else has used up the user's failed attempts.
CREATE TABLE login_known_clients (
    username_key TEXT NOT NULL REFERENCES ldap_users (username_key) ON DELETE CASCADE,
    client       TEXT NOT NULL,
    last_login   BIGINT NOT NULL,
    PRIMARY KEY (username_key, client)
);

CREATE INDEX login_known_clients_last ON login_known_clients (last_login);
