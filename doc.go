// Package ldapauth logs users in against an LDAP directory (OpenLDAP,
// Active Directory and others) and keeps the caller's own users and groups
// in step with it.
//
// It is the Go counterpart of the LDAP login that Flagsmith builds on
// django-python3-ldap: the same LDAP_AUTH_* environment variables with the
// same meaning ([ConfigFromEnv]), the same pluggable pieces
// ([UsernameFormatter], [SearchFilterBuilder], [RelationSyncer]), and the
// same login flow:
//
//  1. an empty password or username, one longer than the limits
//     ([defaultMaxUsernameLength], [defaultMaxPasswordLength]), or an empty
//     bind name made by the username formatter, is refused before any
//     network I/O;
//  2. connect, with StartTLS when configured (certificates verified), or
//     take a pooled connection;
//  3. bind as the user, the bind name made by the username formatter;
//  4. search for the user's entry with the configured filters: no entry
//     refuses the login (this is how the login group works), more than one
//     is an error. With a service account configured, the search runs as
//     it, on a second connection, at the same time as the user's bind (a
//     refused bind returns at once); without, it runs as the user after
//     the bind. With [Config.SearchThenBind], the service account searches
//     first and the bind is as the DN found;
//  5. prove that the entry found is the account whose password the bind
//     checked (see [IdentityError]), or refuse;
//  6. save the user into the [UserStore] under the directory's spelling of
//     the username (the value equal to what was typed), with the mapped
//     fields;
//  7. run the relation syncer (for example [SyncUserGroups]).
//
// # Connections
//
// The servers of LDAP_AUTH_URL are tried in order. A server that fails
// (refused, timed out, reset, busy, a certificate that does not verify) is
// marked down, and logins go only to the servers that are up; a background
// probe reads its root DSE when its back-off (1 s doubling to 30 s) is
// over and marks it up at its first answer. When all are down they are
// tried anyway, so a login is never refused without trying. With every
// server down a login returns [ErrUnavailable] after at most one connect
// timeout per server (plus one receive timeout for a server that accepts
// connections but never answers), or a [*TLSError] when every server
// failed TLS.
//
// Connections are pooled (LDAP_AUTH_POOL_SIZE idle ones of each kind, each
// kept at most LDAP_AUTH_POOL_IDLE_TIMEOUT): users bind on one kind, and
// every login binds again, so a connection bound as one user never acts
// for another; with a service account, its searches run on connections that
// stay bound as it. A connection that hits a network or protocol error, or
// whose call was cancelled, is closed, never pooled.
//
// A pooled connection the server has dropped is detected and replaced
// without failing the login. The rule: the first operation of a login on a
// connection (the user's bind, or the service account's search) is run
// again, once, on a newly dialled connection, only when its connection was
// closed or reset before a single byte of the answer arrived. It is never
// run again after any answer, after a receive timeout (the server may be
// working on it), or after ctx ended. A server that closed a connection
// before reading the bind never saw it, so a lockout policy counts it once;
// the one case it may count twice is a server that read the bind and then
// died before sending a byte of its answer, and even then the bind is sent
// at most twice.
//
// Errors are matched with errors.Is against [ErrInvalidCredentials],
// [ErrNotPermitted], [ErrUnavailable], [ErrConfig] and the others below.
package ldapauth
