package ldapauth_test

import (
	"testing"

	"github.com/go-ldap/ldap/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/internal/slapdtest"
)

// A login search answered noSuchObject after a good bind is a
// configuration fault (a wrong LDAP_AUTH_SEARCH_BASE, or an identity that
// may not see it: slapd answers noSuchObject rather than disclose an
// entry), never the user's wrong password. The users bind by DN, whatever
// the search base, so that the bind succeeds.
func TestSearchBaseNotFoundOpenLDAP(t *testing.T) {
	srv := slapdtest.Start(t)
	byDN := ldapauth.UsernameFormatterFunc(func(_ *ldapauth.Config, username string) (string, error) {
		return slapdtest.UserDN(username), nil
	})
	const missing = "ou=staff,dc=example,dc=com"
	tests := []struct {
		name            string
		user            string // a different one each: three wrong passwords lock an account
		base            string
		account, secret string
		service         bool
	}{
		{"a base that does not exist, searched as the user", "alice", missing, "", "", false},
		{"a base that does not exist, searched as the service account", "carol", missing, slapdtest.ServiceDN, slapdtest.ServicePassword, true},
		// bob may read ou=people and the groups, not the service accounts.
		{"a base the service account may not see", "jürgen", slapdtest.ServiceDN, slapdtest.UserDN("bob"), slapdtest.Password("bob"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := ldapauth.New(&ldapauth.Config{URLs: []string{srv.URL}, SearchBase: tt.base, FormatUsername: byDN,
				ConnectionUsername: tt.account, ConnectionPassword: tt.secret})
			require.NoError(t, err)
			t.Cleanup(func() { a.Close() })

			u, err := a.Authenticate(safetyNet(t), tt.user, slapdtest.Password(tt.user))
			assert.Nil(t, u)
			require.ErrorIs(t, err, ldapauth.ErrConfig)
			assert.NotErrorIs(t, err, ldapauth.ErrInvalidCredentials)
			assert.NotErrorIs(t, err, ldapauth.ErrUnknownUser)
			var cerr *ldapauth.ConfigError
			require.ErrorAs(t, err, &cerr)
			assert.Equal(t, "LDAP_AUTH_SEARCH_BASE", cerr.Variables[0])
			var lerr *ldap.Error
			require.ErrorAs(t, err, &lerr, "the directory's answer is kept")
			assert.Equal(t, uint16(ldap.LDAPResultNoSuchObject), lerr.ResultCode)
			if tt.service {
				assert.ErrorIs(t, err, ldapauth.ErrServiceAccount)
				assert.Contains(t, cerr.Variables, "LDAP_AUTH_CONNECTION_USERNAME")
				assert.Contains(t, err.Error(), tt.account, "the error names who searched")
				assert.NotContains(t, err.Error(), tt.secret)
			} else {
				assert.NotErrorIs(t, err, ldapauth.ErrServiceAccount)
				assert.Contains(t, err.Error(), slapdtest.UserDN(tt.user), "the error names who searched")
			}

			_, err = a.Authenticate(safetyNet(t), tt.user, "wrong-password")
			require.ErrorIs(t, err, ldapauth.ErrInvalidCredentials, "a wrong password is still just that")
		})
	}
}
