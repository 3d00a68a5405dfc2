package openldap_test

import (
	"testing"

	"github.com/go-ldap/ldap/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/internal/slapdtest"
	"github.com/go-ldapauth/ldapauth/storetest"
)

// TestSearchRefused covers a directory that accepts the bind and refuses
// the login search.
//
// ldapauth never searches anonymously, which is what slapd refuses outright
// here ("require authc": unwillingToPerform): an empty password is refused
// before any I/O (TestInvalidCredentials) and a service account without a
// password is a configuration error. The realistic refusal is the service
// account's password rotated by an administrator on a server whose policy
// has pwdMustChange (common on hardened OpenLDAP): the administrator's
// change sets pwdReset, so svc still binds with the new password, and every
// search is then refused with insufficientAccessRights until svc changes
// its password itself. Every login fails, and it must not read as the
// user's wrong password.
func TestSearchRefused(t *testing.T) {
	t.Run("service account must change its password", func(t *testing.T) {
		srv := slapdtest.Start(t)
		// The rotation, as ops would run it (ldapmodify as the rootdn).
		rotate := ldap.NewModifyRequest(slapdtest.ServiceDN, nil)
		rotate.Replace("userPassword", []string{"svc-rotated-password"})
		require.NoError(t, srv.Admin(t).Modify(rotate))

		a, store := newAuth(t, flagsmithEnv(srv.URL,
			ldapauth.EnvConnectionUsername, slapdtest.ServiceDN,
			ldapauth.EnvConnectionPassword, "svc-rotated-password",
		))
		u, err := login(a, "alice", slapdtest.Password("alice"))
		assert.Nil(t, u)
		require.Error(t, err)
		// Today: "ldapauth: search (&(uid=alice)(objectClass=inetOrgPerson))
		// under ou=people,dc=example,dc=com: LDAP Result Code 50
		// "Insufficient Access Rights": Operations are restricted to
		// bind/unbind/abandon/StartTLS/modify password". It names the
		// search and keeps slapd's reason, but not the identity it ran as.
		var lerr *ldap.Error
		require.ErrorAs(t, err, &lerr, "the directory's answer is kept")
		assert.Equal(t, uint16(ldap.LDAPResultInsufficientAccessRights), lerr.ResultCode)
		for _, sentinel := range []error{ldapauth.ErrInvalidCredentials, ldapauth.ErrNotPermitted, ldapauth.ErrUnavailable} {
			assert.NotErrorIs(t, err, sentinel)
		}
		assert.Nil(t, storetest.User(store, "alice"))
	})

	t.Run("a service account without a password is refused before any bind", func(t *testing.T) {
		env := flagsmithEnv("ldap://127.0.0.1:1", ldapauth.EnvConnectionUsername, slapdtest.ServiceDN)
		_, err := ldapauth.LoadConfig(func(name string) (string, bool) { v, ok := env[name]; return v, ok })
		require.ErrorIs(t, err, ldapauth.ErrConfig)
		var cerr *ldapauth.ConfigError
		require.ErrorAs(t, err, &cerr)
		assert.Contains(t, cerr.Variables, ldapauth.EnvConnectionPassword)
	})

	// A known limit, pinned: an identity that binds but may not see other
	// users (here an ordinary user set as the service account by mistake)
	// gets an empty result, not an error, since slapd discloses nothing. The
	// login then reads as an unknown user, hence invalid credentials; only
	// the LoginError's Reason ("the bind succeeded but no ... entry
	// matches") points at the configuration.
	t.Run("service account that cannot see users", func(t *testing.T) {
		srv := sharedServer(t)
		a, _ := newAuth(t, flagsmithEnv(srv.URL,
			ldapauth.EnvConnectionUsername, slapdtest.UserDN("bob"),
			ldapauth.EnvConnectionPassword, slapdtest.Password("bob"),
		))
		_, err := login(a, "alice", slapdtest.Password("alice"))
		require.ErrorIs(t, err, ldapauth.ErrUnknownUser)
		assert.ErrorIs(t, err, ldapauth.ErrInvalidCredentials)
		var lerr *ldapauth.LoginError
		require.ErrorAs(t, err, &lerr)
		assert.NotEmpty(t, lerr.BindName, "the bind that succeeded is named")
	})
}

// TestSizeLimit logs generated users in on the shared server, which holds
// twice slapd's default size limit (500) in ou=people: the login search
// still finds exactly the one entry, whoever runs it.
func TestSizeLimit(t *testing.T) {
	srv := sharedServer(t)
	require.Greater(t, generatedUsers, slapdtest.DefaultSizeLimit, "precondition")
	identities := []struct {
		name  string
		extra []string
	}{
		{"as the user", nil},
		{"as svc, no size limit", serviceAccount},
		{"as svc-limited, the default limit", []string{
			ldapauth.EnvConnectionUsername, slapdtest.LimitedServiceDN,
			ldapauth.EnvConnectionPassword, slapdtest.LimitedServicePassword,
		}},
	}
	for _, id := range identities {
		t.Run(id.name, func(t *testing.T) {
			a, store := newAuth(t, flagsmithEnv(srv.URL, id.extra...))
			for _, i := range []int{1, slapdtest.DefaultSizeLimit, slapdtest.DefaultSizeLimit + 1, generatedUsers} {
				uid := slapdtest.GeneratedUID(i)
				t.Run(uid, func(t *testing.T) {
					u, err := login(a, uid, slapdtest.GeneratedPassword)
					require.NoError(t, err)
					assertSameDN(t, slapdtest.UserDN(uid), u.DN)
					assert.Equal(t, map[string]string{
						"username":   uid,
						"first_name": "Generated",
						"last_name":  "User" + uid[len("user"):],
						"email":      uid + "@example.com",
					}, u.Fields)
					assert.NotNil(t, storetest.User(store, uid))
				})
			}
		})
	}
}

// TestRestart restarts slapd between two logins with the same
// Authenticator: the first login leaves its connections in the pool, the
// restart kills them, and the second login must not fail on them.
func TestRestart(t *testing.T) {
	srv := slapdtest.Start(t)
	type auth struct {
		name string
		a    *ldapauth.Authenticator
	}
	var auths []auth
	for _, mode := range modes() {
		for _, transport := range []struct {
			name string
			vars []string
		}{
			{"plain", nil},
			{"StartTLS", []string{ldapauth.EnvUseTLS, "true", ldapauth.EnvTLSCAFile, srv.CAFile}},
			{"LDAPS", []string{ldapauth.EnvURL, srv.LDAPSURL, ldapauth.EnvTLSCAFile, srv.CAFile}},
		} {
			a, _ := newAuth(t, flagsmithEnv(srv.URL, append(transport.vars, mode.extra...)...))
			auths = append(auths, auth{mode.name + ", " + transport.name, a})
		}
	}

	for _, x := range auths {
		_, err := login(x.a, "alice", slapdtest.Password("alice"))
		require.NoError(t, err, "%s: before the restart", x.name)
	}
	srv.Restart(t)
	for _, x := range auths {
		t.Run(x.name, func(t *testing.T) {
			u, err := login(x.a, "alice", slapdtest.Password("alice"))
			require.NoError(t, err, "after the restart")
			assert.Equal(t, "alice", u.Username)
		})
	}
}
