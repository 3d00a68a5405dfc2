// Package openldap holds ldapauth's integration suite against a real
// OpenLDAP slapd (2.5, with the memberof, refint and ppolicy overlays),
// started on 127.0.0.1 by internal/slapdtest. It has no code of its own:
// only tests, which configure ldapauth through [ldapauth.LoadConfig] with
// the LDAP_AUTH_* variables a Flagsmith deployment on OpenLDAP would set.
//
// One server, seeded from testdata/openldap/seed.ldif plus 1,000 generated
// users, serves the tests that only read the directory (TestMain). Tests
// that change the directory's state (group membership, lockout, forced
// password changes, failed service-account binds, restarts) start their own.
//
// Without slapd the tests skip; CI sets LDAPAUTH_REQUIRE_SLAPD=1 so that
// they fail instead:
//
//	sudo apt-get install slapd ldap-utils
//	LDAPAUTH_REQUIRE_SLAPD=1 go test -race ./integration/openldap/
//
// # TODO for the sync job (LDAP_SYNC_USER_USERNAME / sync_ldap_users_and_groups)
//
// The sync job does not exist yet. When it lands, it must add here, against
// this server:
//
//   - Paging: 5,000 generated users (Options.GeneratedUsers) all seen when
//     the sync account is ServiceDN (no size limit, paged results).
//   - Size limit: the sync account LimitedServiceDN hits sizeLimitExceeded
//     (500) even when paging; the sync aborts and removes nothing.
//   - Paging refused: NoPagingServiceDN answers adminLimitExceeded to the
//     paged results control; the paging off switch makes the sync succeed,
//     and without it the sync aborts and removes nothing.
//   - Users removed from the directory (DeleteUser) are removed from the
//     store; users the store does not hold as directory-managed are not.
//   - A user who leaves the login group (RemoveMember ldapusers) counts as
//     removed; one who leaves a synced group (readers, marvel) is removed
//     from that group only; one who joins (AddMember) is added.
//   - A synced group deleted from the directory is removed from the store;
//     a group dropped from LDAP_SYNCED_GROUPS is left alone and reported.
//   - A search error mid-sync (Restart, or Stop, during the sync) aborts
//     with ErrUnavailable and removes nothing.
//   - LDAP_SYNC_USER_USERNAME given as a DN (cn=svc,...) is used verbatim;
//     given as a plain name it goes through the username formatter; a wrong
//     sync password is ErrServiceAccount.
//   - Directories without memberOf: membership from the group entries
//     (member, uniqueMember, memberUid), as the login's fallback does.
//   - Nested groups with LDAP_AUTH_NESTED_GROUPS=walk (nested-parent holds
//     nested-child, which holds carol): carol counts as a member of
//     nested-parent; the login side is in nested_test.go.
package openldap
