// Package ldaptest runs an LDAP directory in-process on 127.0.0.1 for tests,
// in the manner of net/http/httptest: ldapauth's own tests use it, and so can
// the tests of programs that log users in with ldapauth.
//
// The directory is GLAuth (github.com/glauth/glauth/v2, v2.4.0), a small LDAP
// server written in Go, serving its "config" backend: users and groups held
// in memory, described here by a Directory. A Server listens twice: plain
// LDAP that accepts StartTLS (URL) and LDAPS (LDAPSURL), with a certificate
// signed by a CA created for the server (CAPool, CACertPEM). Env gives the
// ldapauth environment variables that work against it.
//
//	func TestLogin(t *testing.T) {
//		srv := ldaptest.Start(t, ldaptest.DemoDirectory())
//		for k, v := range srv.Env() {
//			t.Setenv(k, v)
//		}
//		// ... log alice in with password "alice-password"
//	}
//
// # The demo directory
//
// DemoDirectory, base dc=example,dc=com, loaded from the embedded file
// testdata/demo.toml. Every password is "<name>-password", a demo password
// to be used nowhere else.
//
//	group      role
//	staff      everyone's primary group, except svc's
//	ldapusers  the login group (LDAP_LOGIN_GROUP)
//	readers    a synced group
//	marvel     a synced group
//	svcaccts   the service account's primary group
//
//	user       name                  other groups
//	alice      Alice Liddell         ldapusers, readers
//	bob        Bob Builder           readers, marvel (not ldapusers: bound, but no login)
//	carol      Carol Danvers         ldapusers, marvel
//	jürgen     Jürgen Groß           ldapusers (a non-ASCII name and password)
//	dave(ops   Dave Ops              ldapusers (a name with a filter special character)
//	mallory    Mallory Malicious     ldapusers, disabled (accountStatus: inactive)
//	svc        Service Account       the ServiceAccount, in no other group
//
// Mail addresses are <name>@example.com, except juergen@example.com and
// dave.ops@example.com; svc has none.
//
// # DNs, search bases and filters
//
// With GLAuth's nameformat uid and groupformat cn, as here:
//
//   - A user's DN is uid=<name>,cn=<primary group>,ou=users,<base> (UserDN),
//     whatever the search base. The user binds with that DN, with
//     uid=<name>,<base> (the DN ldapauth's default username formatter builds
//     when LDAP_AUTH_SEARCH_BASE is the base DN) and with its mail. It cannot
//     bind as uid=<name>,ou=users,<base>: GLAuth reads "ou=users" as a
//     primary group and refuses the bind (49). GLAuth answers no Who Am I,
//     so ldapauth accepts only a bind as the entry's own DN: Server.Env
//     sets the search base to cn=<primary group>,ou=users,<base>
//     (UsersBase), which users may search too.
//   - A group's DN is cn=<group>,ou=groups,<base> (GroupDN); users' memberOf
//     values are these DNs, the primary group included. The entries below
//     ou=groups are groupOfUniqueNames with uniqueMember (user DNs);
//     a subtree search from the base instead returns the same groups as
//     cn=<group>,ou=users,<base>, posixGroup with memberUid (user names) and
//     uniqueMember.
//   - Users are posixAccount and shadowAccount, never inetOrgPerson: the
//     login filter must name posixAccount. A subtree search from either
//     <base> or ou=users,<base> with (&(uid=alice)(objectClass=posixAccount))
//     finds alice, and (memberOf=cn=ldapusers,ou=groups,<base>) inside an AND
//     filter restricts the result to the login group.
//   - Users have uid, givenName, sn, mail, userPrincipalName (the mail),
//     memberOf, accountStatus (active or inactive), uidNumber, gidNumber and
//     posix attributes.
//
// # Access
//
// Anonymous binds succeed but anonymous searches are refused. A bind with a
// DN and an empty password fails (49). Ordinary users may search only the
// bases <base> and ou=users,<base>, exactly; the Directory's ServiceAccount
// may search any base below <base>. Another search fails with
// insufficientAccessRights (50), as does a base outside <base>.
//
// # GLAuth's quirks
//
// GLAuth is not a full LDAP server. What ldapauth's tests must know:
//
//   - On any search error GLAuth answers with the error code and then drops
//     the connection. Its LDAP library also logs such errors (and failed
//     TLS handshakes) with the standard log package; ldaptest leaves the
//     global logger alone, so these lines appear in test output.
//   - Filter values are matched as case-insensitive strings: memberOf
//     matches cn=LDAPUsers,OU=Groups,... but not a DN with spaces after the
//     commas. Non-ASCII values work (uid=JÜRGEN finds jürgen).
//   - GLAuth decodes a filter and re-parses it as text without re-escaping
//     the values. So an escaped "(" works, but an escaped ")" breaks the
//     filter (operationsError, 1), and an escaped "*" acts as a wildcard:
//     (uid=a\2a) finds every uid starting with "a". Equality, presence,
//     substring, AND, OR and NOT work; >=, <= and ~= fail with
//     operationsError.
//   - GLAuth does not unescape bind DNs (RFC 4514): a name containing ",",
//     "+", "\", ";", '"', "<", ">" or a leading "#" cannot bind with a
//     correctly escaped DN (a "," name cannot bind by DN at all; by mail it
//     can). DNs it reports are not escaped either (uid=a,b,cn=...).
//     Validate does not refuse such names, so tests can show these failures.
//   - Paging (RFC 2696) is accepted but ignored: the whole result comes in
//     the first page, with an empty cookie, so paged clients work. A size
//     limit truncates the result silently with success (0), not
//     sizeLimitExceeded (4).
//   - A base search on a DN that does not exist returns no entry and no
//     error (real servers answer noSuchObject, 32).
//   - Disabled users still bind; only their accountStatus says inactive.
//   - Every search rebuilds every user entry; membership is computed by
//     scanning all groups, so a search costs O(users × groups): about 0.4 s
//     per search for Generate(10000, 1000), many times that under -race.
//
// Close ends every goroutine the server started, so goleak finds none.
package ldaptest
