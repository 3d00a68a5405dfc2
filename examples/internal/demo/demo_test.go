package demo_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/examples/internal/demo"
)

func lookup(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestSetupStartsTheDemoWithoutLDAPAuthURL(t *testing.T) {
	cfg, srv, err := demo.SetupEnv(lookup(map[string]string{}))
	require.NoError(t, err)
	require.NotNil(t, srv)
	defer srv.Close()
	assert.Equal(t, []string{srv.URL()}, cfg.URLs)
}

// The demo directory's passwords are public: demo mode must never stand in
// for a real configuration whose URL was forgotten, nor write into a
// database named by DATABASE_URL.
func TestSetupRefusesTheDemoInPlaceOfARealConfiguration(t *testing.T) {
	for name, env := range map[string]map[string]string{
		"URL forgotten":       {"LDAP_AUTH_SEARCH_BASE": "ou=people,dc=corp,dc=com", "LDAP_SYNC_USER_PASSWORD": "secret"},
		"a real database":     {"DATABASE_URL": "postgres://app@127.0.0.1/app"},
		"login group, no URL": {"LDAP_LOGIN_GROUP": "cn=staff,dc=corp,dc=com"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg, srv, err := demo.SetupEnv(lookup(env))
			require.ErrorIs(t, err, ldapauth.ErrConfig)
			assert.Nil(t, cfg)
			assert.Nil(t, srv, "no demo directory started")
			assert.NotContains(t, err.Error(), "secret")
		})
	}
}

func TestSetupUsesTheEnvironmentWhenConfigured(t *testing.T) {
	cfg, srv, err := demo.SetupEnv(lookup(map[string]string{"LDAP_AUTH_URL": "ldap://127.0.0.1:1"}))
	require.NoError(t, err)
	assert.Nil(t, srv)
	assert.Equal(t, []string{"ldap://127.0.0.1:1"}, cfg.URLs)
}
