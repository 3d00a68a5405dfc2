package ldapauth_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/ldaptest"
	"github.com/go-ldapauth/ldapauth/storetest"
)

// upnCollision is the demo directory plus cmallory, whose mail (GLAuth's
// userPrincipalName, and a bind name) is carol@example.com; carol's own
// mail is another. With the principal formatter, "carol" binds as
// carol@example.com: cmallory's account.
func upnCollision() ldaptest.Directory {
	d := ldaptest.DemoDirectory()
	for i := range d.Users {
		if d.Users[i].Name == "carol" {
			d.Users[i].Mail = "carol.danvers@example.com"
		}
	}
	d.Users = append(d.Users, ldaptest.User{Name: "cmallory", Password: "cmallory-password", GivenName: "Carl", SN: "Mallory",
		Mail: "carol@example.com", PrimaryGroup: "staff", Groups: []string{"ldapusers"}})
	return d
}

func principalVars(srv *ldaptest.Server, extra map[string]string) map[string]string {
	vars := srv.Env()
	vars["LDAP_AUTH_FORMAT_USERNAME"] = "django_python3_ldap.utils.format_username_active_directory_principal"
	vars["LDAP_AUTH_ACTIVE_DIRECTORY_DOMAIN"] = "example.com"
	for k, v := range extra {
		vars[k] = v
	}
	return vars
}

// The attack of issue 11: cmallory types carol and his own password. The
// bind (carol@example.com) checks cmallory's password, the search finds
// carol. GLAuth cannot say who is bound (no Who Am I), so nothing proves
// the entry is the bound account: the login is refused, as the user or
// with a service account, and carol is neither returned nor stored.
func TestIdentityUPNCollisionRefused(t *testing.T) {
	srv := ldaptest.Start(t, upnCollision())
	for _, mode := range []struct {
		name  string
		extra map[string]string
	}{
		{"as the user", nil},
		{"with a service account", map[string]string{"LDAP_AUTH_CONNECTION_USERNAME": srv.UserDN("svc"), "LDAP_AUTH_CONNECTION_PASSWORD": "svc-password"}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			a, _, store := authFor(t, srv, principalVars(srv, mode.extra))
			u, err := a.Authenticate(context.Background(), "carol", "cmallory-password")
			assert.Nil(t, u, "carol is not returned")
			require.ErrorIs(t, err, ldapauth.ErrIdentityUnproven)
			var ierr *ldapauth.IdentityError
			require.ErrorAs(t, err, &ierr)
			assert.Equal(t, "carol@example.com", ierr.BindName)
			assert.Equal(t, srv.UserDN("carol"), ierr.EntryDN)
			assert.Contains(t, err.Error(), ldapauth.EnvSearchThenBind, "the error says what to do")
			assert.Nil(t, storetest.User(store, "carol"), "nothing stored")
		})
	}
}

// Search-then-bind removes the divergence by construction: typing carol
// binds as carol's DN, so cmallory's password fails there; each user logs
// in with their own password, under the name they own.
func TestIdentitySearchThenBind(t *testing.T) {
	srv := ldaptest.Start(t, upnCollision())
	a, _, store := authFor(t, srv, principalVars(srv, map[string]string{
		"LDAP_AUTH_SEARCH_THEN_BIND":    "true",
		"LDAP_AUTH_CONNECTION_USERNAME": srv.UserDN("svc"), "LDAP_AUTH_CONNECTION_PASSWORD": "svc-password",
	}))
	ctx := context.Background()

	_, err := a.Authenticate(ctx, "carol", "cmallory-password")
	require.ErrorIs(t, err, ldapauth.ErrInvalidCredentials)
	var lerr *ldapauth.LoginError
	require.ErrorAs(t, err, &lerr)
	assert.Equal(t, srv.UserDN("carol"), lerr.BindName, "bound as the entry found")
	assert.Nil(t, storetest.User(store, "carol"))

	u, err := a.Authenticate(ctx, "carol", "carol-password")
	require.NoError(t, err)
	assert.Equal(t, "carol", u.Username)
	assert.Equal(t, srv.UserDN("carol"), u.DN)

	u, err = a.Authenticate(ctx, "cmallory", "cmallory-password")
	require.NoError(t, err)
	assert.Equal(t, "cmallory", u.Username)
	assert.Equal(t, srv.UserDN("cmallory"), u.DN)

	_, err = a.Authenticate(ctx, "nobody", "cmallory-password")
	require.ErrorIs(t, err, ldapauth.ErrUnknownUser)
	require.ErrorIs(t, err, ldapauth.ErrInvalidCredentials)
}

// With the login group, search-then-bind tells a user outside the group
// (bob, right password) from a wrong password, as the bind-first flow
// does: ErrNotPermitted only after the password was checked.
func TestIdentitySearchThenBindLoginGroup(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.DemoDirectory())
	a, _, _ := authFor(t, srv, map[string]string{
		"LDAP_AUTH_SEARCH_THEN_BIND":    "true",
		"LDAP_AUTH_CONNECTION_USERNAME": srv.UserDN("svc"), "LDAP_AUTH_CONNECTION_PASSWORD": "svc-password",
		"LDAP_AUTH_FORMAT_SEARCH_FILTERS": "flagsmith_ldap.ldap.login_group_search_filter",
		"LDAP_LOGIN_GROUP":                srv.GroupDN("ldapusers"),
	})
	ctx := context.Background()
	_, err := a.Authenticate(ctx, "bob", "bob-password")
	require.ErrorIs(t, err, ldapauth.ErrNotPermitted)
	_, err = a.Authenticate(ctx, "bob", "wrong-password")
	require.ErrorIs(t, err, ldapauth.ErrInvalidCredentials)
	assert.NotErrorIs(t, err, ldapauth.ErrNotPermitted, "a wrong password says nothing about the group")
	u, err := a.Authenticate(ctx, "alice", "alice-password")
	require.NoError(t, err)
	assert.Equal(t, "alice", u.Username)
}

// A bind name that is the entry's DN proves the identity with no round
// trip: the formatter's DN (the search base being the users' branch) logs
// in on GLAuth, which does not answer Who Am I at all.
func TestIdentityDNBindNeedsNoWhoAmI(t *testing.T) {
	a, srv, _ := newAuth(t, nil)
	u, err := a.Authenticate(context.Background(), "ALICE", "alice-password")
	require.NoError(t, err)
	assert.Equal(t, srv.UserDN("alice"), u.DN)
}

// GLAuth also binds uid=<name>,<base>, a name that is not the entry's DN:
// without Who Am I nothing proves which entry that bind checked, so the
// login is refused rather than guessed.
func TestIdentityDNAliasUnproven(t *testing.T) {
	a, srv, _ := newAuth(t, map[string]string{"LDAP_AUTH_SEARCH_BASE": "dc=example,dc=com"})
	_, err := a.Authenticate(context.Background(), "alice", "alice-password")
	require.ErrorIs(t, err, ldapauth.ErrIdentityUnproven)
	assert.NotErrorIs(t, err, ldapauth.ErrInvalidCredentials, "a configuration fault, not the user's")
	var ierr *ldapauth.IdentityError
	require.ErrorAs(t, err, &ierr)
	assert.Equal(t, "uid=alice,dc=example,dc=com", ierr.BindName)
	assert.Equal(t, srv.UserDN("alice"), ierr.EntryDN)
}

// Search-then-bind without a service account is a configuration error
// naming both variables.
func TestSearchThenBindNeedsServiceAccount(t *testing.T) {
	_, err := ldapauth.LoadConfig(env(map[string]string{"LDAP_AUTH_URL": "ldap://127.0.0.1", "LDAP_AUTH_SEARCH_THEN_BIND": "true"}))
	require.ErrorIs(t, err, ldapauth.ErrConfig)
	var cerr *ldapauth.ConfigError
	require.ErrorAs(t, err, &cerr)
	assert.Equal(t, []string{ldapauth.EnvSearchThenBind, ldapauth.EnvConnectionUsername}, cerr.Variables)
	assert.Contains(t, err.Error(), ldapauth.EnvConnectionPassword)
}
