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

// Issue 11 on a Flagsmith deployment's variables (own server: it adds
// entries). Two entries share uid=jdoe, one under ou=people outside the
// login group, one in a sub-OU inside it: the OpenLDAP formatter's bind
// checks the first, the service account's search finds the second, and
// the login is refused (slapd's Who Am I names the first). With
// LDAP_AUTH_SEARCH_THEN_BIND the outer password fails on the inner entry
// and the inner jdoe logs in from the sub-OU. An entry holding uid: admin
// and uid: mallory logs in, typed mallory, as mallory.
func TestIdentityFlagsmithOpenLDAP(t *testing.T) {
	srv := slapdtest.Start(t)
	sub := ldap.NewAddRequest("ou=sub,"+slapdtest.PeopleDN, nil)
	sub.Attribute("objectClass", []string{"organizationalUnit"})
	sub.Attribute("ou", []string{"sub"})
	require.NoError(t, srv.Admin(t).Add(sub))
	outer, inner := slapdtest.UserDN("jdoe"), "uid=jdoe,ou=sub,"+slapdtest.PeopleDN
	srv.AddPerson(t, outer, []string{"jdoe"}, "outer-password")
	srv.AddPerson(t, inner, []string{"jdoe"}, "inner-password", "ldapusers")
	srv.AddPerson(t, "uid=admin,"+slapdtest.PeopleDN, []string{"admin", "mallory"}, "mallory-password", "ldapusers")

	group := append([]string{
		ldapauth.EnvSearchFilters, "flagsmith_ldap.ldap.login_group_search_filter",
		ldapauth.EnvLoginGroup, slapdtest.GroupDN("ldapusers"),
	}, serviceAccount...)

	a, _ := newAuth(t, flagsmithEnv(srv.URL, group...))
	u, err := login(a, "jdoe", "outer-password")
	assert.Nil(t, u)
	require.ErrorIs(t, err, ldapauth.ErrIdentityMismatch)
	require.ErrorIs(t, err, ldapauth.ErrInvalidCredentials)

	stb, store := newAuth(t, flagsmithEnv(srv.URL, append(group, ldapauth.EnvSearchThenBind, "true")...))
	_, err = login(stb, "jdoe", "outer-password")
	require.ErrorIs(t, err, ldapauth.ErrInvalidCredentials)
	u, err = login(stb, "jdoe", "inner-password")
	require.NoError(t, err)
	assertSameDN(t, inner, u.DN)

	u, err = login(stb, "mallory", "mallory-password")
	require.NoError(t, err)
	assert.Equal(t, "mallory", u.Username)
	assert.NotNil(t, storetest.User(store, "mallory"))
	assert.Nil(t, storetest.User(store, "admin"), "never stored under the entry's other value")
}
