package openldap_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/internal/slapdtest"
)

// generatedUsers is how many users the shared server holds besides the
// seed: enough to be past slapd's default size limit (500).
const generatedUsers = 1000

// The shared server, started once by TestMain for the tests that only read
// the directory.
var (
	shared    *slapdtest.Server
	sharedErr error
)

func TestMain(m *testing.M) {
	shared, sharedErr = slapdtest.New(slapdtest.Options{GeneratedUsers: generatedUsers})
	os.Exit(slapdtest.Run(m))
}

// sharedServer returns the shared server, skipping t when slapd is not
// installed (failing it under LDAPAUTH_REQUIRE_SLAPD=1, as
// slapdtest.Start does). The test must not change the directory.
func sharedServer(t *testing.T) *slapdtest.Server {
	t.Helper()
	if errors.Is(sharedErr, slapdtest.ErrNotInstalled) {
		if os.Getenv(slapdtest.RequireEnv) == "1" {
			t.Fatalf("%v; %s=1 requires it", sharedErr, slapdtest.RequireEnv)
		}
		t.Skipf("%v; CI sets %s=1 to fail instead of skipping", sharedErr, slapdtest.RequireEnv)
	}
	require.NoError(t, sharedErr, "starting the shared slapd")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("shared slapd log (tail):\n%s", shared.Log())
		}
	})
	return shared
}

// flagsmithEnv is the environment of a Flagsmith deployment on this
// OpenLDAP server as the docs describe it: the OpenLDAP formatter, the
// docs' search base, and the defaults for the object class (inetOrgPerson)
// and the user fields (username=uid, first_name=givenName, last_name=sn,
// email=mail). extra adds or overrides variables, as name, value pairs.
func flagsmithEnv(url string, extra ...string) map[string]string {
	env := map[string]string{
		"LDAP_AUTH_URL":             url,
		"LDAP_AUTH_SEARCH_BASE":     "ou=people,dc=example,dc=com",
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

// serviceAccount are the variables that make the login search run as svc
// rather than as the user.
var serviceAccount = []string{
	"LDAP_AUTH_CONNECTION_USERNAME", slapdtest.ServiceDN,
	"LDAP_AUTH_CONNECTION_PASSWORD", slapdtest.ServicePassword,
}

// newAuth loads env through ldapauth.LoadConfig, as ConfigFromEnv would,
// and returns an Authenticator writing into a fresh MemStore.
func newAuth(t *testing.T, env map[string]string) (*ldapauth.Authenticator, *ldapauth.MemStore) {
	t.Helper()
	cfg, err := ldapauth.LoadConfig(func(name string) (string, bool) {
		v, ok := env[name]
		return v, ok
	})
	require.NoError(t, err, "LoadConfig")
	store := ldapauth.NewMemStore()
	cfg.Store = store
	a, err := ldapauth.New(cfg)
	require.NoError(t, err, "New")
	t.Cleanup(func() { _ = a.Close() })
	return a, store
}

// login authenticates with a fresh context.
func login(a *ldapauth.Authenticator, username, password string) (*ldapauth.User, error) {
	return a.Authenticate(context.Background(), username, password)
}

var tempUsers atomic.Int64

// addTempUser adds a user in the given groups (cn values) whose uid is
// unique within the test binary (so -count=N runs do not collide) and
// deletes it when the test ends. It returns the uid and the DN.
func addTempUser(t *testing.T, srv *slapdtest.Server, groups ...string) (uid, dn string) {
	t.Helper()
	uid = fmt.Sprintf("temp%d", tempUsers.Add(1))
	dn = srv.AddUser(t, uid, slapdtest.Password(uid), groups...)
	t.Cleanup(func() { srv.DeleteUser(t, uid) })
	return uid, dn
}
