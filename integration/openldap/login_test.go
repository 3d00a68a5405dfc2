package openldap_test

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/internal/slapdtest"
	"github.com/go-ldapauth/ldapauth/storetest"
)

// modes are the two ways the login search runs: as the user after the
// user's own bind (Flagsmith's setup, no service account), and as the
// service account svc after the user's bind has checked the password.
func modes() []struct {
	name  string
	extra []string
} {
	return []struct {
		name  string
		extra []string
	}{
		{"as the user", nil},
		{"as the service account", serviceAccount},
	}
}

func TestLogin(t *testing.T) {
	srv := sharedServer(t)
	tests := []struct {
		name, username, password string
		wantDN                   string
		wantFields               map[string]string
	}{
		{
			name: "alice", username: "alice", password: slapdtest.Password("alice"),
			wantDN: slapdtest.UserDN("alice"),
			wantFields: map[string]string{
				"username": "alice", "first_name": "Alice", "last_name": "Liddell", "email": "alice@example.com",
			},
		},
		{
			// The uid holds a comma: the formatter must escape it in the
			// bind DN (uid=smith\, john,...) and the filter must not.
			name: "escaped DN", username: "smith, john", password: slapdtest.Password("smith, john"),
			wantDN: `uid=smith\, john,ou=people,dc=example,dc=com`,
			wantFields: map[string]string{
				"username": "smith, john", "first_name": "John", "last_name": "Smith", "email": "john.smith@example.com",
			},
		},
		{
			name: "non-ASCII", username: "jürgen", password: slapdtest.Password("jürgen"),
			wantDN: "uid=jürgen,ou=people,dc=example,dc=com",
			wantFields: map[string]string{
				"username": "jürgen", "first_name": "Jürgen", "last_name": "Groß", "email": "juergen.gross@example.com",
			},
		},
		{
			// uid matches case-insensitively (bind DN and filter alike); the
			// store gets the directory's spelling, not what was typed.
			name: "typed in upper case", username: "ALICE", password: slapdtest.Password("alice"),
			wantDN: slapdtest.UserDN("alice"),
			wantFields: map[string]string{
				"username": "alice", "first_name": "Alice", "last_name": "Liddell", "email": "alice@example.com",
			},
		},
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
					assert.Equal(t, tt.wantFields["username"], stored.Username)
					assert.Equal(t, tt.wantFields, stored.Fields)
				})
			}
		})
	}
}

// assertSameDN compares DNs as parsed DNs, case-insensitively, which is how
// the directory compares them.
func assertSameDN(t *testing.T, want, got string) {
	t.Helper()
	w, err := ldap.ParseDN(want)
	require.NoError(t, err)
	g, err := ldap.ParseDN(got)
	require.NoError(t, err)
	assert.True(t, w.EqualFold(g), "DN %q, want %q", got, want)
}

// TestInvalidCredentials runs on its own server: wrong passwords count
// towards the policy's lockout (three in a row lock an account).
func TestInvalidCredentials(t *testing.T) {
	srv := slapdtest.Start(t)
	tests := []struct {
		name, username, password string
	}{
		{"wrong password", "bob", "wrong-password"},
		{"wrong password, escaped DN", "smith, john", "wrong-password"},
		{"unknown user", "nobody", "nobody-password"},
		{"empty password", "alice", ""},
		{"empty username", "", "alice-password"},
		// LDAP injection. Each carries alice's (or bob's) real password: a
		// username that escaped into the bind DN or the filter could then
		// match her entry. They are escaped in both, so the bind DN names
		// no entry and the directory refuses the bind.
		{"filter wildcard", "*", slapdtest.Password("alice")},
		{"filter wildcard suffix", "ali*", slapdtest.Password("alice")},
		{"filter OR", "alice)(|(uid=*", slapdtest.Password("alice")},
		{"filter closing", "alice)(objectClass=*", slapdtest.Password("alice")},
		{"filter NUL", "alice\x00", slapdtest.Password("alice")},
		{"filter escaped byte", `alic\65`, slapdtest.Password("alice")},
		{"DN extra RDN", "alice,ou=people,dc=example,dc=com", slapdtest.Password("alice")},
		{"DN multi-valued RDN", "bob+cn=Bob Builder", slapdtest.Password("bob")},
		{"DN admin", "x,dc=com", slapdtest.AdminPassword},
		{"DN hex escape of comma", `smith\2C john`, slapdtest.Password("smith, john")},
	}
	for _, mode := range modes() {
		t.Run(mode.name, func(t *testing.T) {
			a, store := newAuth(t, flagsmithEnv(srv.URL, mode.extra...))
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					u, err := login(a, tt.username, tt.password)
					assert.Nil(t, u)
					require.ErrorIs(t, err, ldapauth.ErrInvalidCredentials)
					assert.NotErrorIs(t, err, ldapauth.ErrServiceAccount)
					var lerr *ldapauth.LoginError
					require.ErrorAs(t, err, &lerr)
					assert.Equal(t, tt.username, lerr.Username)
				})
			}
			snap, err := storetest.Read(t.Context(), store)
			require.NoError(t, err)
			assert.Empty(t, snap.Users, "no refused login reached the store")
		})
	}

	// Two wrong passwords each for bob and smith, john (one per mode), one
	// short of the lockout; the injection names name no entry, so they
	// count against nobody. Every seed user above still logs in.
	t.Run("users still log in", func(t *testing.T) {
		a, _ := newAuth(t, flagsmithEnv(srv.URL))
		for _, uid := range []string{"alice", "bob", "smith, john"} {
			_, err := login(a, uid, slapdtest.Password(uid))
			assert.NoError(t, err, uid)
		}
	})
}

// TestLoginGroup runs on its own server: it adds a user and records failed
// binds on it, changes the shared server must not see.
func TestLoginGroup(t *testing.T) {
	srv := slapdtest.StartWith(t, slapdtest.Options{GeneratedUsers: 1})
	outsider, _ := addTempUser(t, srv) // in no group; takes the wrong passwords
	tests := []struct {
		name, username, password string
		wantErr                  error // nil: logs in
	}{
		{"member", "alice", slapdtest.Password("alice"), nil},
		{"member with escaped DN", "smith, john", slapdtest.Password("smith, john"), nil},
		{"non-ASCII member", "jürgen", slapdtest.Password("jürgen"), nil},
		{"not a member", "bob", slapdtest.Password("bob"), ldapauth.ErrNotPermitted},
		{"generated user, not a member", slapdtest.GeneratedUID(1), slapdtest.GeneratedPassword, ldapauth.ErrNotPermitted},
		// The password is checked first: a wrong one says nothing about
		// the group.
		{"not a member, wrong password", outsider, "wrong-password", ldapauth.ErrInvalidCredentials},
		{"unknown user", "nobody", "nobody-password", ldapauth.ErrInvalidCredentials},
	}
	for _, mode := range modes() {
		t.Run(mode.name, func(t *testing.T) {
			a, store := newAuth(t, flagsmithEnv(srv.URL, append([]string{
				ldapauth.EnvSearchFilters, "flagsmith_ldap.ldap.login_group_search_filter",
				ldapauth.EnvLoginGroup, slapdtest.GroupDN("ldapusers"),
			}, mode.extra...)...))
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					u, err := login(a, tt.username, tt.password)
					if tt.wantErr == nil {
						require.NoError(t, err)
						assert.NotNil(t, storetest.User(store, u.Username))
						return
					}
					assert.Nil(t, u)
					require.ErrorIs(t, err, tt.wantErr)
					var lerr *ldapauth.LoginError
					require.ErrorAs(t, err, &lerr)
					if tt.wantErr == ldapauth.ErrNotPermitted {
						assert.NotErrorIs(t, err, ldapauth.ErrInvalidCredentials, "a right password is not reported as a wrong one")
						assert.Nil(t, storetest.User(store, tt.username), "a refused user is not stored")
					}
				})
			}
		})
	}
}

func TestServiceAccount(t *testing.T) {
	t.Run("searches for the user", func(t *testing.T) {
		srv := sharedServer(t)
		a, store := newAuth(t, flagsmithEnv(srv.URL, serviceAccount...))
		u, err := login(a, "carol", slapdtest.Password("carol"))
		require.NoError(t, err)
		assert.Equal(t, "carol", u.Username)
		// Searching as svc returns the same memberOf as searching as carol.
		assert.ElementsMatch(t, []string{
			slapdtest.GroupDN("ldapusers"), slapdtest.GroupDN("marvel"), slapdtest.GroupDN("nested-child"),
		}, u.Groups)
		assert.NotNil(t, storetest.User(store, "carol"))
	})

	// On its own server: three failed binds would lock svc.
	t.Run("wrong service password", func(t *testing.T) {
		srv := slapdtest.Start(t)
		a, store := newAuth(t, flagsmithEnv(srv.URL,
			ldapauth.EnvConnectionUsername, slapdtest.ServiceDN,
			ldapauth.EnvConnectionPassword, "wrong-svc-password",
		))
		u, err := login(a, "alice", slapdtest.Password("alice"))
		assert.Nil(t, u)
		require.ErrorIs(t, err, ldapauth.ErrServiceAccount)
		assert.NotErrorIs(t, err, ldapauth.ErrInvalidCredentials, "the service account's fault is not the user's")
		assert.NotErrorIs(t, err, ldapauth.ErrNotPermitted)
		var lerr *ldap.Error
		require.ErrorAs(t, err, &lerr, "the directory's answer is kept")
		assert.Equal(t, uint16(ldap.LDAPResultInvalidCredentials), lerr.ResultCode)
		assert.Nil(t, storetest.User(store, "alice"))

		// The user's own bind comes first: a wrong user password is still
		// the user's invalid credentials, whatever the service account.
		_, err = login(a, "bob", "wrong-password")
		require.ErrorIs(t, err, ldapauth.ErrInvalidCredentials)
		assert.NotErrorIs(t, err, ldapauth.ErrServiceAccount)
	})
}

// TestBindNameUnparsable: slapd answers a bind name it cannot parse (a
// 10,000-character username) with invalidDNSyntax (34). The name came from
// what the user typed, so this is a refused login, logged at Debug with
// the code, and never a server error (which a login page answers with 500).
func TestBindNameUnparsable(t *testing.T) {
	srv := sharedServer(t)
	var logged bytes.Buffer
	for _, mode := range modes() {
		t.Run(mode.name, func(t *testing.T) {
			logged.Reset()
			cfg, err := ldapauth.LoadConfig(func(name string) (string, bool) {
				v, ok := flagsmithEnv(srv.URL, mode.extra...)[name]
				return v, ok
			})
			require.NoError(t, err)
			cfg.Logger = slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelDebug}))
			// A deployment that raised the length cap: the name reaches the
			// server, which cannot parse it (below the cap it never does).
			cfg.MaxUsernameLength = 20_000
			a, err := ldapauth.New(cfg)
			require.NoError(t, err)
			t.Cleanup(func() { _ = a.Close() })

			const password = "some-password"
			_, err = login(a, strings.Repeat("a", 10_000), password)
			require.ErrorIs(t, err, ldapauth.ErrInvalidCredentials)
			assert.NotErrorIs(t, err, ldapauth.ErrUnavailable)
			var lerr *ldap.Error
			require.ErrorAs(t, err, &lerr, "the directory's answer is kept")
			assert.Equal(t, uint16(ldap.LDAPResultInvalidDNSyntax), lerr.ResultCode)
			assert.Contains(t, logged.String(), "result_code=34")
			assert.NotContains(t, logged.String(), password)
		})
	}
}
