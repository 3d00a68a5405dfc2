package openldap_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/internal/slapdtest"
	"github.com/go-ldapauth/ldapauth/storetest"
)

func TestTLS(t *testing.T) {
	srv := sharedServer(t)
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
		url     string // the URL a TLS error names
		wantTLS bool   // a *ldapauth.TLSError; otherwise success
	}{
		{"StartTLS with the CA", startTLS(srv.CAFile), srv.URL, false},
		{"LDAPS with the CA", ldaps(srv.CAFile), srv.LDAPSURL, false},
		{"StartTLS with the wrong CA", startTLS(srv.WrongCAFile), srv.URL, true},
		{"LDAPS with the wrong CA", ldaps(srv.WrongCAFile), srv.LDAPSURL, true},
		// The test CA is in no system pool: without LDAP_AUTH_TLS_CA_FILE
		// verification must fail, never pass silently.
		{"StartTLS with the system pool", startTLS(""), srv.URL, true},
		{"LDAPS with the system pool", ldaps(""), srv.LDAPSURL, true},
	}
	for _, mode := range modes() {
		t.Run(mode.name, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					a, store := newAuth(t, flagsmithEnv(srv.URL, append(tt.vars, mode.extra...)...))
					u, err := login(a, "alice", slapdtest.Password("alice"))
					if !tt.wantTLS {
						require.NoError(t, err)
						assert.Equal(t, "alice", u.Username)
						return
					}
					assert.Nil(t, u)
					var tlsErr *ldapauth.TLSError
					require.ErrorAs(t, err, &tlsErr)
					assert.Equal(t, tt.url, tlsErr.URL)
					assert.NotErrorIs(t, err, ldapauth.ErrInvalidCredentials, "a certificate problem is not the user's password")
					assert.NotErrorIs(t, err, ldapauth.ErrServiceAccount)
					assert.Nil(t, storetest.User(store, "alice"))
				})
			}
		})
	}
}
