package ldapauth_test

import (
	"context"
	"testing"

	"github.com/go-ldap/ldap/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/internal/slapdtest"
)

// addEntry adds an inetOrgPerson at dn with the uid values and password,
// as the rootdn, and puts it in the login group when inGroup.
func addEntry(t *testing.T, srv *slapdtest.Server, dn string, uids []string, password string, inGroup bool) {
	t.Helper()
	req := ldap.NewAddRequest(dn, nil)
	req.Attribute("objectClass", []string{"inetOrgPerson"})
	req.Attribute("uid", uids)
	req.Attribute("cn", uids[:1])
	req.Attribute("sn", uids[:1])
	req.Attribute("userPassword", []string{password})
	require.NoError(t, srv.Admin(t).Add(req), "add %s", dn)
	if inGroup {
		srv.AddMember(t, "ldapusers", dn)
	}
}

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
	addEntry(t, srv, outer, []string{"jdoe"}, "outer-password", false)
	addEntry(t, srv, inner, []string{"jdoe"}, "inner-password", true)

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
	addEntry(t, srv, dn, []string{"admin", "Mallory"}, "mallory-password", true)
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
	assert.NotNil(t, store.User("Mallory"))
	assert.Nil(t, store.User("admin"), "the other value's record is not written")
}
