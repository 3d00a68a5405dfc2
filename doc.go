// Package ldapauth logs users in against an LDAP directory and keeps the
// caller's users and groups in step with it: Flagsmith's django-python3-ldap
// login in Go, with the same LDAP_AUTH_* variables ([LoadConfig]) and
// pluggable pieces ([UsernameFormatter], [SearchFilterBuilder], [RelationSyncer]).
//
// [Authenticator.Authenticate] logs a user in and saves it in the [UserStore];
// [Authenticator.Sync] is the sync job. The details: the repository's docs/.
package ldapauth
