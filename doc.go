// Package ldapauth logs users in against an LDAP directory (OpenLDAP,
// Active Directory and others) and keeps the caller's own users and groups
// in step with it. It is the Go counterpart of the LDAP login Flagsmith
// builds on django-python3-ldap: the same LDAP_AUTH_* variables with the
// same meaning ([LoadConfig]), the same pluggable pieces
// ([UsernameFormatter], [SearchFilterBuilder], [RelationSyncer]), and the
// same login flow.
//
// [Authenticator.Authenticate] refuses bad input before any I/O, binds as
// the user, finds the user's entry, proves it is the account the bind
// checked, saves the user into the [UserStore] and runs the relation
// syncer. The servers are tried in order, with failover, a background probe
// of servers marked down and pooled connections; a login is run again once
// on a new connection only when its pooled one was lost before any byte of
// the answer. [Authenticator.Sync] and [Authenticator.SyncChanges] are the
// sync job. Errors are matched with errors.Is against the Err... sentinels.
//
// The details are in the repository's docs/ folder.
package ldapauth
