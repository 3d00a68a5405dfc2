-- Version 1: users, their mapped fields, groups, memberships and the
-- organisation join. Keys are lower-cased in Go (username_key, dn_key) so
-- that lookups are case-insensitive in both SQLite and PostgreSQL; the
-- directory's spelling is kept beside them.

CREATE TABLE ldap_users (
    username_key TEXT PRIMARY KEY,
    username     TEXT NOT NULL,
    dn           TEXT NOT NULL,
    -- Never a usable local password: these users log in through the
    -- directory only (Django's unusable password starts with "!").
    password     TEXT NOT NULL DEFAULT '!',
    created_at   TIMESTAMP NOT NULL,
    updated_at   TIMESTAMP NOT NULL
);

CREATE TABLE ldap_user_fields (
    username_key TEXT NOT NULL REFERENCES ldap_users (username_key) ON DELETE CASCADE,
    field        TEXT NOT NULL,
    value        TEXT NOT NULL,
    PRIMARY KEY (username_key, field)
);

CREATE TABLE ldap_groups (
    dn_key     TEXT PRIMARY KEY,
    dn         TEXT NOT NULL,
    name       TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

CREATE TABLE ldap_group_members (
    dn_key       TEXT NOT NULL REFERENCES ldap_groups (dn_key) ON DELETE CASCADE,
    username_key TEXT NOT NULL REFERENCES ldap_users (username_key) ON DELETE CASCADE,
    username     TEXT NOT NULL,
    PRIMARY KEY (dn_key, username_key)
);

CREATE INDEX ldap_group_members_user ON ldap_group_members (username_key);

CREATE TABLE organisation_members (
    organisation_id TEXT NOT NULL,
    username_key    TEXT NOT NULL REFERENCES ldap_users (username_key) ON DELETE CASCADE,
    joined_at       TIMESTAMP NOT NULL,
    PRIMARY KEY (organisation_id, username_key)
);

CREATE INDEX organisation_members_user ON organisation_members (username_key);
