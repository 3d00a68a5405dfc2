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
// # The sync job (sync_test.go)
//
// Authenticator.Sync (Flagsmith's sync_ldap_users_and_groups), each test on
// its own server:
//
//   - TestSyncPaging: 5,000 generated users read in pages of 400 and 1,000
//     (below and above slapd's default size limit of 500) by ServiceDN, all
//     seen, the second run a no-op; LimitedServiceDN hits sizeLimitExceeded
//     whatever the page size (the limit caps a paged search's total too) and
//     unpaged, and NoPagingServiceDN gets adminLimitExceeded when paging:
//     each aborts naming LDAP_SYNC_PAGE_SIZE and removes nothing, even
//     forced; with paging off NoPagingServiceDN reads everything at once.
//   - TestSyncDirectoryChanges: a deleted user is removed, one who never
//     logged in is not touched; a user who leaves or joins a synced group
//     follows; a deleted synced group (noSuchObject) is removed; a group
//     dropped from LDAP_SYNCED_GROUPS is left alone and reported.
//   - TestSyncLeftLoginGroup: leaving the login group counts as removed.
//   - TestSyncNestedLoginGroup, TestSyncNestedGroupsKept: with
//     LDAP_AUTH_NESTED_GROUPS=walk the sync keeps what a login would count
//     through nesting (login group and synced group), and drops it once the
//     nesting is gone.
//   - TestSyncEntryWithoutMemberOf: memberships of an entry without
//     memberOf come from the group entries, each read once.
//   - TestSyncAccount: LDAP_SYNC_USER_USERNAME as a DN verbatim, as a plain
//     name through the formatter; a wrong password is ErrServiceAccount.
//   - TestSyncServerRestartMidway: slapd restarted during the paged read:
//     ErrUnavailable, nothing removed; the next run completes.
//
// The root package keeps the interrupted-read cases that need a fault
// proxy or a cancelled context (sync_openldap_test.go).
package openldap
