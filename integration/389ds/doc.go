// Package ds389 holds ldapauth's integration suite against a real 389
// Directory Server (Debian's 389-ds-base 2.3: the server behind Red Hat
// Directory Server and FreeIPA), started on 127.0.0.1 by internal/dstest,
// with the memberOf plugin (nested groups listed in memberOf, over member
// and uniqueMember) and a password policy that locks an account after three
// wrong passwords. It has no code of its own: only tests, which configure
// ldapauth through [ldapauth.LoadConfig] with the LDAP_AUTH_* variables a
// Flagsmith deployment on 389-DS would set. It runs the login,
// account-state, nesting, TLS and sync scenarios of the OpenLDAP suite
// (integration/openldap), plus what is 389-DS's own: locked (19) and
// disabled (53, nsAccountLock) accounts, groupOfUniqueNames, and
// LDAP_AUTH_EXCLUDE_DISABLED on nsAccountLock.
//
// One instance serves the whole test binary (creating one takes about six
// seconds); tests that change the directory add their own entries.
//
// Without 389-DS the tests skip; CI sets LDAPAUTH_REQUIRE_389DS=1 so that
// they fail instead:
//
//	sudo apt-get install 389-ds-base
//	LDAPAUTH_REQUIRE_389DS=1 go test -race ./integration/389ds/
package ds389
