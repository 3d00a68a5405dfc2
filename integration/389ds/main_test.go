package ds389_test

import (
	"context"
	"os"
	"testing"

	"github.com/go-ldap/ldap/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/internal/dstest"
)

// generatedUsers is how many users the shared server holds besides the
// seed, all in ldapusers: enough for a sync read in several pages.
const generatedUsers = 600

func TestMain(m *testing.M) {
	dstest.SetSharedOptions(dstest.Options{GeneratedUsers: generatedUsers})
	os.Exit(dstest.Run(m))
}

// flagsmithEnv is the environment of a Flagsmith deployment on this 389-DS
// server: the OpenLDAP formatter (uid=<name>,<search base>), the search
// base, and the defaults for the object class (inetOrgPerson) and the user
// fields. extra adds or overrides variables, as name, value pairs.
func flagsmithEnv(url string, extra ...string) map[string]string {
	env := map[string]string{
		"LDAP_AUTH_URL":             url,
		"LDAP_AUTH_SEARCH_BASE":     dstest.PeopleDN,
		"LDAP_AUTH_FORMAT_USERNAME": "django_python3_ldap.utils.format_username_openldap",
	}
	if len(extra)%2 != 0 {
		panic("flagsmithEnv: odd number of extra arguments")
	}
	for i := 0; i < len(extra); i += 2 {
		env[extra[i]] = extra[i+1]
	}
	return env
}

var serviceAccount = []string{
	"LDAP_AUTH_CONNECTION_USERNAME", dstest.ServiceDN,
	"LDAP_AUTH_CONNECTION_PASSWORD", dstest.ServicePassword,
}

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

func loadConfig(t *testing.T, env map[string]string) *ldapauth.Config {
	t.Helper()
	cfg, err := ldapauth.LoadConfig(func(name string) (string, bool) {
		v, ok := env[name]
		return v, ok
	})
	require.NoError(t, err, "LoadConfig")
	return cfg
}

// newAuth loads env and returns an Authenticator writing into a fresh
// MemStore.
func newAuth(t *testing.T, env map[string]string) (*ldapauth.Authenticator, *ldapauth.MemStore) {
	t.Helper()
	store := ldapauth.NewMemStore()
	return storeAuth(t, env, store), store
}

func storeAuth(t *testing.T, env map[string]string, store *ldapauth.MemStore) *ldapauth.Authenticator {
	t.Helper()
	cfg := loadConfig(t, env)
	cfg.Store = store
	a, err := ldapauth.New(cfg)
	require.NoError(t, err, "New")
	t.Cleanup(func() { _ = a.Close() })
	return a
}

func login(a *ldapauth.Authenticator, username, password string) (*ldapauth.User, error) {
	return a.Authenticate(context.Background(), username, password)
}

// tempUser adds a user of the test's own in groups (cn values), deleted
// when the test ends: tests that change state or type wrong passwords never
// touch the shared seed.
func tempUser(t *testing.T, srv *dstest.Server, groups ...string) (uid, dn string) {
	t.Helper()
	uid = dstest.TempName("temp")
	return uid, srv.AddUser(t, uid, dstest.Password(uid), groups...)
}

func assertSameDN(t *testing.T, want, got string) {
	t.Helper()
	w, err := ldap.ParseDN(want)
	require.NoError(t, err)
	g, err := ldap.ParseDN(got)
	require.NoError(t, err)
	assert.True(t, w.EqualFold(g), "DN %q, want %q", got, want)
}
