package ldapauth_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/internal/slapdtest"
	"github.com/go-ldapauth/ldapauth/storetest"
)

// A user entry without memberOf (here: a user in no group, which the
// memberof overlay leaves without the attribute) takes its memberships
// from the group entries. A login removes the user from a synced group
// whose entry does not list the user, and leaves alone a synced group the
// directory answers noSuchObject for: that answer does not confirm the
// user left (the batch sync removes groups that are gone).
func TestSyncUserGroupsWithoutMemberOfOpenLDAP(t *testing.T) {
	srv := slapdtest.Start(t)
	srv.AddUser(t, "frank", "frank-password")
	readers, retired := slapdtest.GroupDN("readers"), slapdtest.GroupDN("retired")
	ctx := context.Background()
	store := ldapauth.NewMemStore()
	require.NoError(t, store.SaveUser(ctx, &ldapauth.User{Username: "frank", Fields: map[string]string{"username": "frank"}}))
	for _, g := range []string{readers, retired} {
		require.NoError(t, store.SaveGroup(ctx, ldapauth.Group{DN: g, Name: ldapauth.GroupName(g)}))
		require.NoError(t, store.SetMember(ctx, g, "frank", true))
	}
	a := syncAuth(t, map[string]string{
		"LDAP_AUTH_URL":                          srv.URL,
		"LDAP_AUTH_SEARCH_BASE":                  slapdtest.PeopleDN,
		"LDAP_AUTH_SYNC_USER_RELATIONS":          "flagsmith_ldap.ldap.sync_user_groups",
		"LDAP_DEFAULT_FLAGSMITH_ORGANISATION_ID": "1",
		"LDAP_SYNCED_GROUPS":                     readers + ":" + retired,
	}, store)

	u, err := a.Authenticate(safetyNet(t), "frank", "frank-password")
	require.NoError(t, err)
	require.Empty(t, u.Groups, "precondition: no memberOf")
	members, _ := storetest.Members(store, readers)
	assert.Empty(t, members, "readers' entry does not list frank")
	members, _ = storetest.Members(store, retired)
	assert.Equal(t, []string{"frank"}, members, "noSuchObject confirms nothing about frank")
}
