package openldap_test

import (
	"fmt"
	"testing"

	"github.com/go-ldap/ldap/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/internal/slapdtest"
	"github.com/go-ldapauth/ldapauth/storetest"
)

// Users and memberships the sync account's access rules hide are kept;
// those the directory proves gone still go. Each test pairs a hidden case
// with a real change of the same kind in the same run.

// unconfirmed indexes a report's kept removals by "user" or "user in
// group".
func unconfirmed(rep *ldapauth.SyncReport) map[string]string {
	out := map[string]string{}
	for _, k := range rep.Unconfirmed {
		key := k.Username
		if k.GroupDN != "" {
			key += " in " + k.GroupDN
		}
		out[key] = k.Reason
	}
	return out
}

// alice's whole entry is hidden from the sync account (OpenLDAP answers
// noSuchObject without a matched DN, and names ou=people for an entry
// really missing there): she is kept and listed. bob, deleted
// for real, is proven gone (noSuchObject naming ou=people, readable, with
// no uid=bob below) and removed.
func TestSyncHiddenUserEntryOpenLDAP(t *testing.T) {
	srv := slapdtest.StartWith(t, slapdtest.Options{ACL: hideFromSvc(fmt.Sprintf("dn.exact=%q", slapdtest.UserDN("alice")))})
	store := ldapauth.NewMemStore()
	a := syncAuth(t, jobEnv(srv, slapdtest.ServiceDN, slapdtest.ServicePassword), store)
	loginAll(t, a, "alice", "bob", "carol", "jürgen")
	srv.DeleteUser(t, "bob")

	rep := runSync(t, a, ldapauth.SyncOptions{})
	assert.Equal(t, []string{"bob"}, rep.UsersRemoved, "%s", rep)
	assert.Nil(t, storetest.User(store, "bob"))
	require.NotNil(t, storetest.User(store, "alice"), "a hidden entry is not proof of absence")
	assert.Equal(t, []string{"alice"}, members(store, "readers"), "alice's memberships stay")
	notes := unconfirmed(rep)
	require.Len(t, notes, 1, "%s", rep)
	assert.Contains(t, notes["alice"], "not confirmed gone")
	assert.Contains(t, notes["alice"], "not shown its entry")
	assert.Equal(t, 1, rep.Counts.Unconfirmed)
	assert.Contains(t, rep.String(), "removals not confirmed, kept (1):\n  user alice: ")
}

// With the login-group filter, alice's memberOf is hidden from the sync
// account, so the filtered read misses her: the login group's entry, asked
// by Compare, lists her, so she is kept. carol, taken out of the login
// group for real, is readable without the group term and the group's
// entry answers compareFalse: removed.
func TestSyncLoginGroupMemberOfHiddenOpenLDAP(t *testing.T) {
	srv := slapdtest.StartWith(t, slapdtest.Options{ACL: hideFromSvc(fmt.Sprintf("dn.exact=%q attrs=memberOf", slapdtest.UserDN("alice")))})
	store := ldapauth.NewMemStore()
	a := syncAuth(t, jobEnv(srv, slapdtest.ServiceDN, slapdtest.ServicePassword,
		ldapauth.EnvSearchFilters, "flagsmith_ldap.ldap.login_group_search_filter",
		ldapauth.EnvLoginGroup, slapdtest.GroupDN("ldapusers")), store)
	loginAll(t, a, "alice", "carol", "jürgen")
	srv.RemoveMember(t, "ldapusers", slapdtest.UserDN("carol"))

	rep := runSync(t, a, ldapauth.SyncOptions{})
	assert.Equal(t, []string{"carol"}, rep.UsersRemoved, "%s", rep)
	assert.Nil(t, storetest.User(store, "carol"))
	require.NotNil(t, storetest.User(store, "alice"), "a hidden memberOf is not proof she left the login group")
	notes := unconfirmed(rep)
	require.Len(t, notes, 1, "%s", rep)
	assert.Contains(t, notes["alice"], "not confirmed outside the login group")
	assert.Contains(t, notes["alice"], "lists the user in member")
}

// The readers value of memberOf is hidden from the sync account: alice and
// bob look as if they had left readers. A Compare of readers' member says
// bob is listed (kept); alice, taken out of readers for real, compares
// false and goes. With readers' member hidden as well, the Compare answers
// insufficientAccess and nothing in readers goes, while marvel's real
// change (bob out) still does.
func TestSyncHiddenMemberOfValueOpenLDAP(t *testing.T) {
	readers, marvel := slapdtest.GroupDN("readers"), slapdtest.GroupDN("marvel")
	hideValue := hideFromSvc(fmt.Sprintf("dn.subtree=%q attrs=memberOf val.regex=%q", slapdtest.PeopleDN, ".*readers.*"))
	t.Run("member readable", func(t *testing.T) {
		srv := slapdtest.StartWith(t, slapdtest.Options{ACL: hideValue})
		store := ldapauth.NewMemStore()
		a := syncAuth(t, jobEnv(srv, slapdtest.ServiceDN, slapdtest.ServicePassword), store)
		loginAll(t, a, "alice", "bob", "carol")
		require.Equal(t, []string{"alice", "bob"}, members(store, "readers"))
		srv.RemoveMember(t, "readers", slapdtest.UserDN("alice"))

		rep := runSync(t, a, ldapauth.SyncOptions{})
		assert.Equal(t, []ldapauth.Membership{{GroupDN: readers, Username: "alice"}}, rep.MembershipsRemoved, "%s", rep)
		assert.Equal(t, []string{"bob"}, members(store, "readers"))
		notes := unconfirmed(rep)
		require.Len(t, notes, 1, "%s", rep)
		assert.Contains(t, notes["bob in "+readers], "lists the user in member")
		assert.Equal(t, ldapauth.RemovalCount{Remove: 1, Total: 4}, rep.RemovalGuard.Memberships, "the guard weighs what is removed")
	})
	t.Run("member hidden too", func(t *testing.T) {
		srv := slapdtest.StartWith(t, slapdtest.Options{ACL: hideValue + hideFromSvc(fmt.Sprintf("dn.exact=%q attrs=member", readers))})
		store := ldapauth.NewMemStore()
		a := syncAuth(t, jobEnv(srv, slapdtest.ServiceDN, slapdtest.ServicePassword), store)
		loginAll(t, a, "alice", "bob", "carol")
		require.Equal(t, []string{"alice", "bob"}, members(store, "readers"))
		require.Equal(t, []string{"bob", "carol"}, members(store, "marvel"))
		srv.RemoveMember(t, "marvel", slapdtest.UserDN("bob"))

		rep := runSync(t, a, ldapauth.SyncOptions{})
		assert.Equal(t, []ldapauth.Membership{{GroupDN: marvel, Username: "bob"}}, rep.MembershipsRemoved, "%s", rep)
		assert.Equal(t, []string{"alice", "bob"}, members(store, "readers"))
		assert.Equal(t, []string{"carol"}, members(store, "marvel"))
		// alice still shows memberOf (ldapusers): her readers removal is
		// asked and kept; bob now shows none, so readers' entry decides
		// him, and it came without member values (groups left alone).
		notes := unconfirmed(rep)
		require.Len(t, notes, 1, "%s", rep)
		assert.Contains(t, notes["alice in "+readers], "answered 50 Insufficient Access Rights")
		require.Len(t, rep.GroupsLeftAlone, 1)
		assert.Equal(t, readers, rep.GroupsLeftAlone[0].DN)
	})
}

// mail is hidden from the sync account for every user: no entry of the
// read carries it, so the stored emails are kept (and reported) while a
// real change of another field (bob's sn) is still applied. Without the
// rule, not one entry clears mail: carol's, deleted for real, clears.
func TestSyncHiddenMappedFieldOpenLDAP(t *testing.T) {
	t.Run("hidden from every entry", func(t *testing.T) {
		srv := slapdtest.StartWith(t, slapdtest.Options{ACL: hideFromSvc(fmt.Sprintf("dn.subtree=%q attrs=mail", slapdtest.PeopleDN))})
		store := ldapauth.NewMemStore()
		a := syncAuth(t, jobEnv(srv, slapdtest.ServiceDN, slapdtest.ServicePassword), store)
		loginAll(t, a, "alice", "bob")
		aliceBefore := *storetest.User(store, "alice")
		require.NotEmpty(t, aliceBefore.Fields["email"])
		modify := ldap.NewModifyRequest(slapdtest.UserDN("bob"), nil)
		modify.Replace("sn", []string{"Builder-Renamed"})
		require.NoError(t, srv.Admin(t).Modify(modify))

		rep := runSync(t, a, ldapauth.SyncOptions{})
		assert.Equal(t, []string{"bob"}, rep.UsersUpdated, "%s", rep)
		assert.Equal(t, aliceBefore, *storetest.User(store, "alice"), "alice's email is kept")
		bob := storetest.User(store, "bob")
		assert.Equal(t, "Builder-Renamed", bob.Fields["last_name"])
		assert.NotEmpty(t, bob.Fields["email"], "bob's email is kept with his update")
		require.Len(t, rep.Unconfirmed, 1, "%s", rep)
		assert.Equal(t, "email", rep.Unconfirmed[0].Field)
		assert.Contains(t, rep.Unconfirmed[0].Reason, "no entry of the read carried mail")
		assert.Contains(t, rep.String(), "  field email: ")
	})
	t.Run("cleared on one entry", func(t *testing.T) {
		srv := slapdtest.Start(t)
		store := ldapauth.NewMemStore()
		a := syncAuth(t, jobEnv(srv, slapdtest.ServiceDN, slapdtest.ServicePassword), store)
		loginAll(t, a, "alice", "carol")
		modify := ldap.NewModifyRequest(slapdtest.UserDN("carol"), nil)
		modify.Delete("mail", nil)
		require.NoError(t, srv.Admin(t).Modify(modify))

		rep := runSync(t, a, ldapauth.SyncOptions{})
		assert.Equal(t, []string{"carol"}, rep.UsersUpdated, "%s", rep)
		assert.NotContains(t, storetest.User(store, "carol").Fields, "email", "a real change clears")
		assert.Empty(t, rep.Unconfirmed)
	})
}

// A login without a service account reads as the user, who may read
// neither memberOf nor the groups' member values: every synced group's
// entry comes without member values. alice's login keeps her memberships
// (a Compare of member answers insufficientAccess) rather than emptying
// them.
func TestLoginHiddenMembersKeepsMembershipsOpenLDAP(t *testing.T) {
	services := "ou=services," + slapdtest.BaseDN
	srv := slapdtest.StartWith(t, slapdtest.Options{ACL: fmt.Sprintf(`access to dn.subtree=%q attrs=memberOf
	by dn.children=%q break
	by * none
access to dn.subtree=%q attrs=member
	by dn.children=%q break
	by * none
`, slapdtest.PeopleDN, services, "ou=groups,"+slapdtest.BaseDN, services)})
	store := ldapauth.NewMemStore()
	a := syncAuth(t, jobEnv(srv, slapdtest.ServiceDN, slapdtest.ServicePassword), store)
	runSync(t, a, ldapauth.SyncOptions{CreateUsers: true})
	require.Equal(t, []string{"alice", "bob"}, members(store, "readers"), "the sync account reads memberOf")
	before := snapshot(t, store)

	u, err := login(a, "alice", slapdtest.Password("alice"))
	require.NoError(t, err)
	assert.Empty(t, u.Groups, "alice is shown no memberOf")
	assert.Equal(t, before.Groups, snapshot(t, store).Groups, "her login removes no membership it cannot confirm")
}
