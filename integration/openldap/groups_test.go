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

const organisationID = "1"

// syncEnv is a Flagsmith environment with sync_user_groups copying the
// groups groupDNs.
func syncEnv(url string, mode []string, groupDNs ...string) map[string]string {
	synced := ""
	for i, dn := range groupDNs {
		if i > 0 {
			synced += ":"
		}
		synced += dn
	}
	return flagsmithEnv(url, append([]string{
		ldapauth.EnvSyncRelations, "flagsmith_ldap.ldap.sync_user_groups",
		ldapauth.EnvOrganisationID, organisationID,
		ldapauth.EnvSyncedGroups, synced,
	}, mode...)...)
}

// TestSyncedGroups changes group membership, so it runs on its own server.
// Membership comes from memberOf, which the memberof overlay keeps.
func TestSyncedGroups(t *testing.T) {
	srv := slapdtest.Start(t)
	readers, marvel := slapdtest.GroupDN("readers"), slapdtest.GroupDN("marvel")

	for _, mode := range modes() {
		t.Run(mode.name, func(t *testing.T) {
			a, store := newAuth(t, syncEnv(srv.URL, mode.extra, readers, marvel))
			uid, dn := addTempUser(t, srv, "readers")

			// First login: in readers, not in marvel.
			_, err := login(a, uid, slapdtest.Password(uid))
			require.NoError(t, err)
			assert.Equal(t, []string{organisationID}, storetest.Organisations(store, uid))
			got, ok := storetest.Members(store, readers)
			require.True(t, ok, "readers is created")
			assert.Equal(t, []string{uid}, got)
			g, _ := storetest.GroupOf(store, readers)
			assert.Equal(t, "readers", g.Name, "named after the first RDN")
			_, ok = storetest.Members(store, marvel)
			assert.False(t, ok, "marvel is not created: nobody in it logged in")

			// Between the logins, the directory moves the user from
			// readers to marvel.
			srv.RemoveMember(t, "readers", dn)
			srv.AddMember(t, "marvel", dn)

			_, err = login(a, uid, slapdtest.Password(uid))
			require.NoError(t, err)
			got, ok = storetest.Members(store, readers)
			require.True(t, ok, "readers stays: groups are removed by the sync job only")
			assert.Empty(t, got, "removed from readers")
			got, ok = storetest.Members(store, marvel)
			require.True(t, ok, "marvel is created")
			assert.Equal(t, []string{uid}, got, "added to marvel")
			assert.Equal(t, []string{organisationID}, storetest.Organisations(store, uid), "joining again is harmless")
		})
	}
}

// TestSyncedGroupsWithoutMemberOf covers users whose entry has no memberOf
// at all. Such a user is in no groupOfNames here (the memberof overlay would
// have written memberOf otherwise), so ldapauth falls back to reading the
// synced groups' entries: uniqueMember of a groupOfUniqueNames and
// memberUid of a posixGroup, which the overlay does not track, as on
// directories that run no memberof overlay at all.
func TestSyncedGroupsWithoutMemberOf(t *testing.T) {
	srv := slapdtest.Start(t)
	readers := slapdtest.GroupDN("readers")
	unique, posix := slapdtest.GroupDN("unique-devs"), slapdtest.GroupDN("posix-devs")

	admin := srv.Admin(t)
	addUnique := ldap.NewAddRequest(unique, nil)
	addUnique.Attribute("objectClass", []string{"groupOfUniqueNames"})
	addUnique.Attribute("cn", []string{"unique-devs"})
	addUnique.Attribute("uniqueMember", []string{slapdtest.UserDN("bob")}) // a MUST attribute
	require.NoError(t, admin.Add(addUnique))
	addPosix := ldap.NewAddRequest(posix, nil)
	addPosix.Attribute("objectClass", []string{"posixGroup"})
	addPosix.Attribute("cn", []string{"posix-devs"})
	addPosix.Attribute("gidNumber", []string{"5000"})
	require.NoError(t, admin.Add(addPosix))

	modify := func(t *testing.T, dn, op, attr, value string) {
		t.Helper()
		req := ldap.NewModifyRequest(dn, nil)
		switch op {
		case "add":
			req.Add(attr, []string{value})
		case "delete":
			req.Delete(attr, []string{value})
		}
		require.NoError(t, srv.Admin(t).Modify(req))
	}

	for _, mode := range modes() {
		t.Run(mode.name, func(t *testing.T) {
			a, store := newAuth(t, syncEnv(srv.URL, mode.extra, readers, unique, posix))
			uid, dn := addTempUser(t, srv) // in no group: no memberOf

			u, err := login(a, uid, slapdtest.Password(uid))
			require.NoError(t, err)
			require.Empty(t, u.Groups, "precondition: the entry has no memberOf")
			assert.Equal(t, []string{organisationID}, storetest.Organisations(store, uid), "a user in no group still joins the organisation")
			for _, g := range []string{readers, unique, posix} {
				got, _ := storetest.Members(store, g)
				assert.NotContains(t, got, uid, g)
			}

			modify(t, unique, "add", "uniqueMember", dn)
			modify(t, posix, "add", "memberUid", uid)
			u, err = login(a, uid, slapdtest.Password(uid))
			require.NoError(t, err)
			require.Empty(t, u.Groups, "precondition: still no memberOf")
			for _, g := range []string{unique, posix} {
				got, ok := storetest.Members(store, g)
				require.True(t, ok, "%s is created", g)
				assert.Equal(t, []string{uid}, got, g)
			}
			got, _ := storetest.Members(store, readers)
			assert.NotContains(t, got, uid)

			modify(t, posix, "delete", "memberUid", uid)
			_, err = login(a, uid, slapdtest.Password(uid))
			require.NoError(t, err)
			got, _ = storetest.Members(store, posix)
			assert.Empty(t, got, "removed from posix-devs")
			got, _ = storetest.Members(store, unique)
			assert.Equal(t, []string{uid}, got, "still in unique-devs")
		})
	}
}
