package ds389_test

import (
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/internal/dstest"
	"github.com/go-ldapauth/ldapauth/storetest"
)

func TestLogin(t *testing.T) {
	srv := dstest.Shared(t)
	tests := []struct {
		name, username, password string
		wantDN                   string
		wantFields               map[string]string
	}{
		{"alice", "alice", dstest.Password("alice"), dstest.UserDN("alice"),
			map[string]string{"username": "alice", "first_name": "Alice", "last_name": "Liddell", "email": "alice@example.com"}},
		{"escaped DN", "smith, john", dstest.Password("smith, john"), `uid=smith\, john,ou=people,dc=example,dc=com`,
			map[string]string{"username": "smith, john", "first_name": "John", "last_name": "Smith", "email": "john.smith@example.com"}},
		{"non-ASCII", "jürgen", dstest.Password("jürgen"), "uid=jürgen,ou=people,dc=example,dc=com",
			map[string]string{"username": "jürgen", "first_name": "Jürgen", "last_name": "Groß", "email": "juergen.gross@example.com"}},
		// The store gets the directory's spelling, not what was typed.
		{"typed in upper case", "ALICE", dstest.Password("alice"), dstest.UserDN("alice"),
			map[string]string{"username": "alice", "first_name": "Alice", "last_name": "Liddell", "email": "alice@example.com"}},
	}
	for _, mode := range modes() {
		t.Run(mode.name, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					a, store := newAuth(t, flagsmithEnv(srv.URL, mode.extra...))
					u, err := login(a, tt.username, tt.password)
					require.NoError(t, err)
					assert.Equal(t, tt.wantFields["username"], u.Username)
					assertSameDN(t, tt.wantDN, u.DN)
					assert.Equal(t, tt.wantFields, u.Fields)
					stored := storetest.User(store, tt.wantFields["username"])
					require.NotNil(t, stored, "the user is in the store")
					assert.Equal(t, tt.wantFields, stored.Fields)
				})
			}
		})
	}
}

// TestInvalidCredentials: wrong passwords go to a user of the test's own
// (three lock an account); the injection names name no entry.
func TestInvalidCredentials(t *testing.T) {
	srv := dstest.Shared(t)
	for _, mode := range modes() {
		t.Run(mode.name, func(t *testing.T) {
			victim, _ := tempUser(t, srv)
			tests := []struct {
				name, username, password string
			}{
				{"wrong password", victim, "wrong-password"},
				{"unknown user", "nobody", "nobody-password"},
				{"empty password", "alice", ""},
				{"empty username", "", dstest.Password("alice")},
				{"filter wildcard", "*", dstest.Password("alice")},
				{"filter wildcard suffix", "ali*", dstest.Password("alice")},
				{"filter OR", "alice)(|(uid=*", dstest.Password("alice")},
				{"filter NUL", "alice\x00", dstest.Password("alice")},
				{"DN extra RDN", "alice,ou=people,dc=example,dc=com", dstest.Password("alice")},
				{"DN multi-valued RDN", "bob+cn=Bob Builder", dstest.Password("bob")},
				{"DN admin", "x,dc=com", dstest.AdminPassword},
				{"DN hex escape of comma", `smith\2C john`, dstest.Password("smith, john")},
				{"10,000-character username", strings.Repeat("a", 10_000), "some-password"},
			}
			a, store := newAuth(t, flagsmithEnv(srv.URL, mode.extra...))
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					u, err := login(a, tt.username, tt.password)
					assert.Nil(t, u)
					require.ErrorIs(t, err, ldapauth.ErrInvalidCredentials)
					assert.NotErrorIs(t, err, ldapauth.ErrServiceAccount)
					assert.NotErrorIs(t, err, ldapauth.ErrUnavailable)
					var lerr *ldapauth.LoginError
					require.ErrorAs(t, err, &lerr)
					if len(tt.username) > ldapauth.DefaultMaxUsernameLength {
						// Refused before any I/O; the error quotes a short prefix only.
						assert.Less(t, len(lerr.Username), 100)
						assert.True(t, strings.HasPrefix(tt.username, strings.TrimSuffix(lerr.Username, "...")), lerr.Username)
					} else {
						assert.Equal(t, tt.username, lerr.Username)
					}
				})
			}
			snap, err := storetest.Read(t.Context(), store)
			require.NoError(t, err)
			assert.Empty(t, snap.Users, "no refused login reached the store")
		})
	}
}

func TestLoginGroup(t *testing.T) {
	srv := dstest.Shared(t)
	outsider, _ := tempUser(t, srv)
	tests := []struct {
		name, group, username, password string
		wantErr                         error
	}{
		{"member", "ldapusers", "alice", dstest.Password("alice"), nil},
		{"member with escaped DN", "ldapusers", "smith, john", dstest.Password("smith, john"), nil},
		{"non-ASCII member", "ldapusers", "jürgen", dstest.Password("jürgen"), nil},
		{"generated member", "ldapusers", dstest.GeneratedUID(1), dstest.GeneratedPassword, nil},
		{"not a member", "ldapusers", "bob", dstest.Password("bob"), ldapauth.ErrNotPermitted},
		{"not a member, wrong password", "ldapusers", outsider, "wrong-password", ldapauth.ErrInvalidCredentials},
		{"unknown user", "ldapusers", "nobody", "nobody-password", ldapauth.ErrInvalidCredentials},
		// groupOfUniqueNames: the memberOf plugin lists it too.
		{"uniqueMember", "staff", "alice", dstest.Password("alice"), nil},
		{"not a uniqueMember", "staff", "bob", dstest.Password("bob"), ldapauth.ErrNotPermitted},
	}
	for _, mode := range modes() {
		t.Run(mode.name, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					a, store := newAuth(t, flagsmithEnv(srv.URL, append([]string{
						ldapauth.EnvSearchFilters, "flagsmith_ldap.ldap.login_group_search_filter",
						ldapauth.EnvLoginGroup, dstest.GroupDN(tt.group),
					}, mode.extra...)...))
					u, err := login(a, tt.username, tt.password)
					if tt.wantErr == nil {
						require.NoError(t, err)
						assert.NotNil(t, storetest.User(store, u.Username))
						return
					}
					assert.Nil(t, u)
					require.ErrorIs(t, err, tt.wantErr)
					if tt.wantErr == ldapauth.ErrNotPermitted {
						assert.NotErrorIs(t, err, ldapauth.ErrInvalidCredentials, "a right password is not reported as a wrong one")
					}
				})
			}
		})
	}
}

func TestServiceAccount(t *testing.T) {
	srv := dstest.Shared(t)
	t.Run("searches for the user", func(t *testing.T) {
		a, store := newAuth(t, flagsmithEnv(srv.URL, serviceAccount...))
		u, err := login(a, "carol", dstest.Password("carol"))
		require.NoError(t, err)
		// memberOf as the memberOf plugin writes it: nested-parent too.
		assert.ElementsMatch(t, []string{
			dstest.GroupDN("ldapusers"), dstest.GroupDN("marvel"), dstest.GroupDN("nested-child"), dstest.GroupDN("nested-parent"),
		}, u.Groups)
		assert.NotNil(t, storetest.User(store, "carol"))
	})
	// A service account of the test's own: wrong passwords count towards
	// its lockout.
	t.Run("wrong service password", func(t *testing.T) {
		_, svcDN := tempUser(t, srv)
		a, store := newAuth(t, flagsmithEnv(srv.URL,
			ldapauth.EnvConnectionUsername, svcDN, ldapauth.EnvConnectionPassword, "wrong-svc-password"))
		u, err := login(a, "alice", dstest.Password("alice"))
		assert.Nil(t, u)
		require.ErrorIs(t, err, ldapauth.ErrServiceAccount)
		assert.NotErrorIs(t, err, ldapauth.ErrInvalidCredentials, "the service account's fault is not the user's")
		var lerr *ldap.Error
		require.ErrorAs(t, err, &lerr)
		assert.Equal(t, uint16(ldap.LDAPResultInvalidCredentials), lerr.ResultCode)
		assert.Nil(t, storetest.User(store, "alice"))
	})
}

func TestTLS(t *testing.T) {
	srv := dstest.Shared(t)
	startTLS := func(caFile string) []string {
		vars := []string{ldapauth.EnvUseTLS, "true"}
		if caFile != "" {
			vars = append(vars, ldapauth.EnvTLSCAFile, caFile)
		}
		return vars
	}
	ldaps := func(caFile string) []string {
		vars := []string{ldapauth.EnvURL, srv.LDAPSURL}
		if caFile != "" {
			vars = append(vars, ldapauth.EnvTLSCAFile, caFile)
		}
		return vars
	}
	tests := []struct {
		name    string
		vars    []string
		url     string
		wantTLS bool
	}{
		{"StartTLS with the CA", startTLS(srv.CAFile), srv.URL, false},
		{"LDAPS with the CA", ldaps(srv.CAFile), srv.LDAPSURL, false},
		{"StartTLS with the wrong CA", startTLS(srv.WrongCAFile), srv.URL, true},
		{"LDAPS with the wrong CA", ldaps(srv.WrongCAFile), srv.LDAPSURL, true},
		{"StartTLS with the system pool", startTLS(""), srv.URL, true},
		{"LDAPS with the system pool", ldaps(""), srv.LDAPSURL, true},
	}
	for _, mode := range modes() {
		t.Run(mode.name, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					a, store := newAuth(t, flagsmithEnv(srv.URL, append(tt.vars, mode.extra...)...))
					u, err := login(a, "alice", dstest.Password("alice"))
					if !tt.wantTLS {
						require.NoError(t, err)
						assert.Equal(t, "alice", u.Username)
						return
					}
					assert.Nil(t, u)
					var tlsErr *ldapauth.TLSError
					require.ErrorAs(t, err, &tlsErr)
					assert.Equal(t, tt.url, tlsErr.URL)
					assert.NotErrorIs(t, err, ldapauth.ErrInvalidCredentials)
					assert.Nil(t, storetest.User(store, "alice"))
				})
			}
		})
	}
}
