package openldap_test

import (
	"context"
	"fmt"
	"iter"
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/internal/slapdtest"
	"github.com/go-ldapauth/ldapauth/storetest"
)

// What a sync account's access rules can hide must never read as "gone".
// Each test starts its own slapd with extra access rules for the sync
// account (svc), as a production directory may have them.

// hideFromSvc is an access rule that hides what from svc and leaves every
// other identity to the built-in rules.
func hideFromSvc(what string) string {
	return fmt.Sprintf("access to %s\n\tby dn.exact=%q none\n\tby * break\n", what, slapdtest.ServiceDN)
}

// The sync account is shown no memberOf (so every synced group's entry is
// read for the memberships), not the entry of marvel, and not the members
// of readers. Logins, which read as the user, see all of it.
//   - marvel: noSuchObject without a matched DN (OpenLDAP's answer for a
//     hidden entry): kept, with its memberships, and reported;
//   - readers: its entry without member values: its memberships kept and
//     reported;
//   - ldapusers, deleted for real: noSuchObject naming ou=groups, which svc
//     reads and where a one-level search finds no ldapusers: removed.
func TestSyncHiddenGroupsOpenLDAP(t *testing.T) {
	readers, marvel, ldapusers := slapdtest.GroupDN("readers"), slapdtest.GroupDN("marvel"), slapdtest.GroupDN("ldapusers")
	srv := slapdtest.StartWith(t, slapdtest.Options{ACL: hideFromSvc("attrs=memberOf") +
		hideFromSvc(fmt.Sprintf("dn.exact=%q", marvel)) +
		hideFromSvc(fmt.Sprintf("dn.exact=%q attrs=member", readers))})
	store := ldapauth.NewMemStore()
	a := syncAuth(t, jobEnv(srv, slapdtest.ServiceDN, slapdtest.ServicePassword,
		ldapauth.EnvSyncedGroups, readers+":"+marvel+":"+ldapusers), store)
	loginAll(t, a, "alice", "bob", "carol", "jürgen")
	require.Equal(t, []string{"alice", "bob"}, members(store, "readers"), "the logins read memberOf as the user")
	require.Equal(t, []string{"bob", "carol"}, members(store, "marvel"))
	before := snapshot(t, store)

	rep := runSync(t, a, ldapauth.SyncOptions{})
	assert.Zero(t, rep.Counts.Changes(), "nothing the sync account cannot see is removed: %s", rep)
	assert.Equal(t, before, snapshot(t, store))
	notes := map[string]string{}
	for _, n := range rep.GroupsLeftAlone {
		notes[n.DN] = n.Reason
	}
	assert.Len(t, notes, 2, "%s", rep)
	assert.Contains(t, notes[marvel], "not confirmed gone")
	assert.Contains(t, notes[marvel], "no matched DN")
	assert.Contains(t, notes[readers], "without member, uniqueMember or memberUid values")
	assert.Contains(t, notes[readers], "2 memberships")
	assert.Contains(t, rep.String(), "groups left alone (2):\n")

	admin := srv.Admin(t)
	require.NoError(t, admin.Del(ldap.NewDelRequest(ldapusers, nil)))
	rep = runSync(t, a, ldapauth.SyncOptions{})
	assert.Equal(t, []ldapauth.Group{{DN: ldapusers, Name: "ldapusers"}}, rep.GroupsRemoved, "a group really deleted is proven gone: %s", rep)
	assert.Empty(t, rep.MembershipsRemoved)
	_, ok := storetest.GroupOf(store, ldapusers)
	assert.False(t, ok)
	assert.Equal(t, []string{"bob", "carol"}, members(store, "marvel"), "still kept")
	assert.Equal(t, []string{"alice", "bob"}, members(store, "readers"), "still kept")
}

// The removal guard weighs synced groups against the synced groups the
// store holds: six of seven proven gone is refused, and forced it goes.
func TestSyncRemovalGuardGroupsOpenLDAP(t *testing.T) {
	srv := slapdtest.Start(t)
	admin := srv.Admin(t)
	store := ldapauth.NewMemStore()
	ctx := context.Background()
	var dns []string
	for i := range 7 {
		dn := slapdtest.GroupDN(fmt.Sprintf("team%d", i))
		add := ldap.NewAddRequest(dn, nil)
		add.Attribute("objectClass", []string{"groupOfNames"})
		add.Attribute("member", []string{slapdtest.ServiceDN})
		require.NoError(t, admin.Add(add))
		require.NoError(t, store.SaveGroup(ctx, ldapauth.Group{DN: dn, Name: ldapauth.GroupName(dn)}))
		dns = append(dns, dn)
	}
	a := syncAuth(t, jobEnv(srv, slapdtest.ServiceDN, slapdtest.ServicePassword, ldapauth.EnvSyncedGroups, strings.Join(dns, ":")), store)
	rep := runSync(t, a, ldapauth.SyncOptions{})
	require.Zero(t, rep.Counts.Changes(), "%s", rep)
	for _, dn := range dns[1:] {
		require.NoError(t, admin.Del(ldap.NewDelRequest(dn, nil)))
	}
	before := snapshot(t, store)

	rep, err := a.Sync(ctx, ldapauth.SyncOptions{})
	require.ErrorIs(t, err, ldapauth.ErrRemovalGuard)
	var gerr *ldapauth.RemovalGuardError
	require.ErrorAs(t, err, &gerr)
	assert.Equal(t, ldapauth.RemovalCount{Remove: 6, Total: 7, OverLimit: true}, gerr.Groups)
	assert.False(t, gerr.Users.OverLimit)
	assert.Contains(t, err.Error(), "6 of 7 synced groups")
	assert.Len(t, rep.GroupsRemoved, 6, "the plan")
	assert.Contains(t, rep.String(), "synced groups 6 of 7 (over the limit)")
	assert.Equal(t, before, snapshot(t, store), "nothing written")

	rep = runSync(t, a, ldapauth.SyncOptions{Force: true})
	assert.Len(t, rep.GroupsRemoved, 6)
	assert.Len(t, snapshot(t, store).Groups, 1)
}

// noDetails is a store seen through the UserStore interface alone, whose
// users stream without their DN, so the sync cannot place an entry by DN.
type noDetails struct{ ldapauth.UserStore }

func (s noDetails) Users(ctx context.Context) iter.Seq2[ldapauth.StoredUser, error] {
	return func(yield func(ldapauth.StoredUser, error) bool) {
		for u, err := range s.UserStore.Users(ctx) {
			u.DN = ""
			if !yield(u, err) {
				return
			}
		}
	}
}

// An access rule hides jürgen's uid from the sync account: his entry
// comes without the username attribute. With the store's details it is
// placed by DN and jürgen is kept, unchanged; without them it could be
// anyone, so the run holds back every removal (bob's, deleted for real)
// and lists it, until forced.
func TestSyncEntryWithoutUsernameOpenLDAP(t *testing.T) {
	srv := slapdtest.StartWith(t, slapdtest.Options{ACL: hideFromSvc(fmt.Sprintf("dn.exact=%q attrs=uid", slapdtest.UserDN("jürgen")))})
	store := ldapauth.NewMemStore()
	a := syncAuth(t, jobEnv(srv, slapdtest.ServiceDN, slapdtest.ServicePassword), store)
	loginAll(t, a, "alice", "bob", "carol", "jürgen")

	t.Run("placed by DN", func(t *testing.T) {
		rep := runSync(t, a, ldapauth.SyncOptions{})
		assert.Empty(t, rep.UsersRemoved, "%s", rep)
		assert.NotNil(t, storetest.User(store, "jürgen"))
		require.Len(t, rep.Skipped, 1)
		assert.Equal(t, slapdtest.UserDN("jürgen"), rep.Skipped[0].DN)
		assert.Contains(t, rep.Skipped[0].Reason, `matched by DN to the stored user "jürgen"`)
		assert.Empty(t, rep.Held.Reason)
	})

	srv.DeleteUser(t, "bob")
	cfg := jobEnv(srv, slapdtest.ServiceDN, slapdtest.ServicePassword)
	blind, err := ldapauth.LoadConfig(func(k string) (string, bool) { v, ok := cfg[k]; return v, ok })
	require.NoError(t, err)
	blind.Store = noDetails{store}
	b, err := ldapauth.New(blind)
	require.NoError(t, err)
	t.Cleanup(func() { b.Close() })

	t.Run("no stored DN: removals held back", func(t *testing.T) {
		rep := runSync(t, b, ldapauth.SyncOptions{})
		assert.Empty(t, rep.UsersRemoved)
		assert.Equal(t, []string{"bob", "jürgen"}, rep.Held.UsersRemoved, "what a complete read would remove")
		assert.Contains(t, rep.Held.Reason, "without the uid attribute")
		assert.Equal(t, 2, rep.Counts.Held)
		assert.Contains(t, rep.Skipped[0].Reason, "removals are held back")
		assert.Contains(t, rep.String(), "removals held back (2): ")
		assert.Contains(t, rep.String(), "\n  user bob\n  user jürgen\n")
		assert.NotNil(t, storetest.User(store, "bob"), "held back")
		assert.NotNil(t, storetest.User(store, "jürgen"))
	})
	t.Run("forced", func(t *testing.T) {
		rep := runSync(t, b, ldapauth.SyncOptions{Force: true})
		assert.Equal(t, []string{"bob", "jürgen"}, rep.UsersRemoved)
		assert.Nil(t, storetest.User(store, "bob"))
	})
}

// An entry whose uid has two values is mapped onto no user: mallory's
// entry also carrying uid "alice" (after alice's own entry is gone) must
// not take over alice's record, nor remove it; it is skipped and listed.
func TestSyncMultiValuedUsernameOpenLDAP(t *testing.T) {
	srv := slapdtest.Start(t)
	store := ldapauth.NewMemStore()
	a := syncAuth(t, jobEnv(srv, slapdtest.ServiceDN, slapdtest.ServicePassword), store)
	loginAll(t, a, "alice", "bob")
	aliceBefore := *storetest.User(store, "alice")

	srv.DeleteUser(t, "alice")
	admin := srv.Admin(t)
	mallory := slapdtest.UserDN("mallory")
	add := ldap.NewAddRequest(mallory, nil)
	add.Attribute("objectClass", []string{"inetOrgPerson"})
	add.Attribute("uid", []string{"alice", "mallory"})
	add.Attribute("cn", []string{"Mallory"})
	add.Attribute("sn", []string{"Mallory"})
	add.Attribute("mail", []string{"mallory@example.com"})
	require.NoError(t, admin.Add(add))
	srv.AddMember(t, "readers", mallory)

	rep := runSync(t, a, ldapauth.SyncOptions{})
	assert.Empty(t, rep.UsersUpdated, "alice's record is not pointed at mallory's entry: %s", rep)
	assert.Empty(t, rep.UsersRemoved)
	assert.Empty(t, rep.MembershipsAdded)
	assert.Empty(t, rep.MembershipsRemoved)
	require.Len(t, rep.Skipped, 1)
	assert.Equal(t, mallory, rep.Skipped[0].DN)
	assert.Contains(t, rep.Skipped[0].Reason, `2 values of uid ("alice", "mallory")`)
	assert.Equal(t, aliceBefore, *storetest.User(store, "alice"))
}
