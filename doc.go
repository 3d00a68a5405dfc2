// Package ldapauth logs users in against an LDAP directory and keeps the
// caller's users and groups in step with it: the Go counterpart of the LDAP
// login Flagsmith builds on django-python3-ldap, with the same LDAP_AUTH_*
// variables ([LoadConfig]), pluggable pieces ([UsernameFormatter],
// [SearchFilterBuilder], [RelationSyncer]) and login flow.
//
// [Authenticator.Authenticate] binds as the user, finds and proves the
// user's entry, saves the user into the [UserStore] and runs the relation
// syncer, with failover across servers and pooled connections.
// [Authenticator.Sync] is the sync job. The details: the repository's docs/.
package ldapauth
