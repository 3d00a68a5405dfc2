-- Version 6: a user's mapped fields move into its ldap_users row, as one
-- JSON object (TEXT; written by the store with its keys sorted), instead of
-- a row each in ldap_user_fields. A first sync then writes one row per user
-- instead of about four, each with its own foreign-key check and index
-- entry. The fields are kept: each user's rows become its object.
ALTER TABLE ldap_users ADD COLUMN fields TEXT NOT NULL DEFAULT '{}';

UPDATE ldap_users SET fields = (
    SELECT json_group_object(field, value) FROM ldap_user_fields f
    WHERE f.username_key = ldap_users.username_key)
WHERE username_key IN (SELECT username_key FROM ldap_user_fields);

DROP TABLE ldap_user_fields;
