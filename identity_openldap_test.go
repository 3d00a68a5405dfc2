package ldapauth_test

import (
	"context"
	"testing"

	"github.com/go-ldap/ldap/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/internal/slapdtest"
	"github.com/go-ldapauth/ldapauth/storetest"
)

// The second attack of issue 11, on real OpenLDAP (no uniqueness overlay):
// two entries share uid=jdoe, one directly under ou=people outside the
// login group, one in a sub-OU inside it. The formatter's bind checks the
// first; the service account's search with the login-group term finds the
// second. The bind DN is not the entry's DN, and Who Am I names the first
// entry: refused as a mismatch. Search-then-bind binds as the entry found,
// so the outer jdoe's password fails there, and the inner jdoe logs in
// from the sub-OU, which the formatter cannot reach.
func TestIdentityDuplicateUIDOpenLDAP(t *testing.T) {
	srv := slapdtest.Start(t)
	sub := ldap.NewAddRequest("ou=sub,"+slapdtest.PeopleDN, nil)
	sub.Attribute("objectClass", []string{"organizationalUnit"})
	sub.Attribute("ou", []string{"sub"})
	require.NoError(t, srv.Admin(t).Add(sub))
	outer, inner := slapdtest.UserDN("jdoe"), "uid=jdoe,ou=sub,"+slapdtest.PeopleDN
	srv.AddPerson(t, outer, []string{"jdoe"}, "outer-password")
	srv.AddPerson(t, inner, []string{"jdoe"}, "inner-password", "ldapusers")

	cfg := func(searchThenBind bool) *ldapauth.Config {
		return &ldapauth.Config{URLs: []string{srv.URL}, SearchBase: slapdtest.PeopleDN,
			SearchFilters: ldapauth.LoginGroupFilters{}, LoginGroup: slapdtest.GroupDN("ldapusers"),
			ConnectionUsername: slapdtest.ServiceDN, ConnectionPassword: slapdtest.ServicePassword,
			SearchThenBind: searchThenBind}
	}
	ctx := context.Background()
	t.Run("formatter", func(t *testing.T) {
		a, err := ldapauth.New(cfg(false))
		require.NoError(t, err)
		t.Cleanup(func() { a.Close() })
		u, err := a.Authenticate(ctx, "jdoe", "outer-password")
		assert.Nil(t, u, "the other jdoe is not returned")
		require.ErrorIs(t, err, ldapauth.ErrIdentityMismatch)
		var ierr *ldapauth.IdentityError
		require.ErrorAs(t, err, &ierr)
		assert.Equal(t, "dn:"+outer, ierr.Bound, "slapd's Who Am I names the bound entry")
		assert.Equal(t, inner, ierr.EntryDN)
	})
	t.Run("search-then-bind", func(t *testing.T) {
		a, err := ldapauth.New(cfg(true))
		require.NoError(t, err)
		t.Cleanup(func() { a.Close() })
		_, err = a.Authenticate(ctx, "jdoe", "outer-password")
		require.ErrorIs(t, err, ldapauth.ErrInvalidCredentials)
		u, err := a.Authenticate(ctx, "jdoe", "inner-password")
		require.NoError(t, err, "a user in a sub-OU logs in")
		assert.Equal(t, inner, u.DN)
		assert.Equal(t, "jdoe", u.Username)
	})
}

// Item 2 of issue 11 on real OpenLDAP: an entry holding uid: admin and
// uid: mallory logs in, typed mallory, as mallory (the value typed, in the
// directory's spelling), never as admin; the store's admin record is not
// touched.
func TestUsernameIsTheMatchingValueOpenLDAP(t *testing.T) {
	srv := slapdtest.Start(t)
	dn := "uid=admin," + slapdtest.PeopleDN
	srv.AddPerson(t, dn, []string{"admin", "Mallory"}, "mallory-password", "ldapusers")
	store := ldapauth.NewMemStore()
	a, err := ldapauth.New(&ldapauth.Config{URLs: []string{srv.URL}, SearchBase: slapdtest.PeopleDN,
		ConnectionUsername: slapdtest.ServiceDN, ConnectionPassword: slapdtest.ServicePassword,
		SearchThenBind: true, Store: store})
	require.NoError(t, err)
	t.Cleanup(func() { a.Close() })

	u, err := a.Authenticate(context.Background(), "mallory", "mallory-password")
	require.NoError(t, err)
	assert.Equal(t, "Mallory", u.Username)
	assert.Equal(t, "Mallory", u.Fields["username"])
	assert.Equal(t, dn, u.DN)
	assert.NotNil(t, storetest.User(store, "Mallory"))
	assert.Nil(t, storetest.User(store, "admin"), "the other value's record is not written")
}
