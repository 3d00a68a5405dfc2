package ldapauth_test

import (
	"context"
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/internal/faultproxy"
	"github.com/go-ldapauth/ldapauth/internal/slapdtest"
)

// Real OpenLDAP, for what GLAuth cannot show: noSuchObject for a deleted
// group, real paging, size limits and refused paging. slapdtest skips
// these without slapd, and fails them with LDAPAUTH_REQUIRE_SLAPD=1 (CI).

// slapdSyncVars configures the sync against srv as the given service
// account, with readers and marvel synced.
func slapdSyncVars(srv *slapdtest.Server, account, password string, extra map[string]string) map[string]string {
	vars := map[string]string{
		"LDAP_AUTH_URL":                          srv.URL,
		"LDAP_AUTH_SEARCH_BASE":                  slapdtest.PeopleDN,
		"LDAP_AUTH_SYNC_USER_RELATIONS":          "flagsmith_ldap.ldap.sync_user_groups",
		"LDAP_DEFAULT_FLAGSMITH_ORGANISATION_ID": "1",
		"LDAP_SYNCED_GROUPS":                     slapdtest.GroupDN("readers") + ":" + slapdtest.GroupDN("marvel"),
		"LDAP_SYNC_USER_USERNAME":                account,
		"LDAP_SYNC_USER_PASSWORD":                password,
	}
	for k, v := range extra {
		vars[k] = v
	}
	return vars
}

func TestSyncOpenLDAPDirectoryChanges(t *testing.T) {
	srv := slapdtest.Start(t)
	store := ldapauth.NewMemStore()
	a := syncAuth(t, slapdSyncVars(srv, slapdtest.ServiceDN, slapdtest.ServicePassword, nil), store)
	login(t, a, "alice", "bob", "carol", "jürgen")
	readers, marvel := slapdtest.GroupDN("readers"), slapdtest.GroupDN("marvel")
	rep := runSync(t, a, ldapauth.SyncOptions{})
	require.Zero(t, rep.Counts.Changes(), "%s", rep)

	srv.DeleteUser(t, "jürgen")
	srv.AddMember(t, "readers", slapdtest.UserDN("carol"))
	srv.RemoveMember(t, "readers", slapdtest.UserDN("bob"))
	rep = runSync(t, a, ldapauth.SyncOptions{})
	assert.Equal(t, []string{"jürgen"}, rep.UsersRemoved)
	assert.Equal(t, []ldapauth.Membership{{GroupDN: readers, Username: "carol"}}, rep.MembershipsAdded)
	assert.Equal(t, []ldapauth.Membership{{GroupDN: readers, Username: "bob"}}, rep.MembershipsRemoved)
	members, _ := store.Members(readers)
	assert.Equal(t, []string{"alice", "carol"}, members)

	// A deleted group: slapd answers noSuchObject, a definitive "gone".
	admin := srv.Admin(t)
	require.NoError(t, admin.Del(ldap.NewDelRequest(marvel, nil)))
	rep = runSync(t, a, ldapauth.SyncOptions{})
	assert.Equal(t, []ldapauth.Group{{DN: marvel, Name: "marvel"}}, rep.GroupsRemoved)
	assert.Empty(t, rep.MembershipsRemoved, "the group goes with its memberships")
	_, ok := store.GroupOf(marvel)
	assert.False(t, ok)
	_, ok = store.GroupOf(readers)
	assert.True(t, ok)

	again := runSync(t, a, ldapauth.SyncOptions{})
	assert.Zero(t, again.Counts.Changes(), "a second run changes nothing: %s", again)
}

// A user in no group has no memberOf: its memberships come from the group
// entries, each read once.
func TestSyncOpenLDAPEntryWithoutMemberOf(t *testing.T) {
	srv := slapdtest.Start(t)
	srv.AddUser(t, "loner", "loner-password")
	store := ldapauth.NewMemStore()
	a := syncAuth(t, slapdSyncVars(srv, slapdtest.ServiceDN, slapdtest.ServicePassword, nil), store)
	login(t, a, "loner", "bob")
	var groupsRead int
	rep := runSync(t, a, ldapauth.SyncOptions{Progress: func(p ldapauth.SyncProgress) { groupsRead = max(groupsRead, p.Groups) }})
	assert.Zero(t, rep.Counts.Changes(), "%s", rep)
	assert.Equal(t, 2, groupsRead, "each synced group's entry, once")
	assert.NotNil(t, store.User("loner"))
}

func TestSyncOpenLDAPPaging(t *testing.T) {
	const generated = 1200
	srv := slapdtest.StartWith(t, slapdtest.Options{GeneratedUsers: generated, GeneratedUserGroups: []string{"readers"}})
	const users = generated + 7 // and the seed users
	store := ldapauth.NewMemStore()
	vars := slapdSyncVars(srv, slapdtest.ServiceDN, slapdtest.ServicePassword, map[string]string{"LDAP_SYNC_PAGE_SIZE": "100"})
	a := syncAuth(t, vars, store)
	var pages []int
	rep := runSync(t, a, ldapauth.SyncOptions{CreateUsers: true, Progress: func(p ldapauth.SyncProgress) {
		if p.Phase == ldapauth.SyncReadUsers && p.Pages > 0 {
			pages = append(pages, p.Users)
		}
	}})
	assert.Equal(t, 13, rep.Pages, "pages of 100")
	assert.Len(t, pages, 13)
	assert.Equal(t, 100, pages[0], "entries arrive page by page")
	assert.Equal(t, users, rep.DirectoryUsers)
	assert.Len(t, rep.UsersCreated, users)
	members, _ := store.Members(slapdtest.GroupDN("readers"))
	assert.Len(t, members, generated+2)

	again := runSync(t, a, ldapauth.SyncOptions{})
	assert.Zero(t, again.Counts.Changes(), "%s", again)
	assert.Equal(t, 13, again.Pages)
}

// seededStore syncs every user of srv into a new store as svc, then
// deletes user000001 from the directory: a complete read would remove it.
func seededStore(t *testing.T, srv *slapdtest.Server) *ldapauth.MemStore {
	t.Helper()
	store := ldapauth.NewMemStore()
	a := syncAuth(t, slapdSyncVars(srv, slapdtest.ServiceDN, slapdtest.ServicePassword, nil), store)
	runSync(t, a, ldapauth.SyncOptions{CreateUsers: true})
	srv.DeleteUser(t, slapdtest.GeneratedUID(1))
	return store
}

func TestSyncOpenLDAPLimits(t *testing.T) {
	srv := slapdtest.StartWith(t, slapdtest.Options{GeneratedUsers: 600})
	store := seededStore(t, srv)
	before := snapshot(t, store)
	tests := []struct {
		name, account, password, pageSize string
		code                              uint16
	}{
		{"size limit 500, paged", slapdtest.LimitedServiceDN, slapdtest.LimitedServicePassword, "100", ldap.LDAPResultSizeLimitExceeded},
		{"size limit 500, unpaged", slapdtest.LimitedServiceDN, slapdtest.LimitedServicePassword, "0", ldap.LDAPResultSizeLimitExceeded},
		{"paging refused", slapdtest.NoPagingServiceDN, slapdtest.NoPagingServicePassword, "100", ldap.LDAPResultAdminLimitExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := syncAuth(t, slapdSyncVars(srv, tt.account, tt.password, map[string]string{"LDAP_SYNC_PAGE_SIZE": tt.pageSize}), store)
			rep, err := a.Sync(context.Background(), ldapauth.SyncOptions{Force: true})
			require.ErrorIs(t, err, ldapauth.ErrSyncAborted)
			assert.True(t, ldap.IsErrorWithCode(err, tt.code), "%v", err)
			var aerr *ldapauth.SyncAbortError
			require.ErrorAs(t, err, &aerr)
			assert.Equal(t, []string{"LDAP_SYNC_PAGE_SIZE"}, aerr.Variables, "the error names the setting that may fix it: %v", err)
			assert.Nil(t, rep)
			assert.Equal(t, before, snapshot(t, store), "nothing removed, even forced")
		})
	}
	t.Run("paging off where it is refused", func(t *testing.T) {
		a := syncAuth(t, slapdSyncVars(srv, slapdtest.NoPagingServiceDN, slapdtest.NoPagingServicePassword, map[string]string{"LDAP_SYNC_PAGE_SIZE": "0"}), store)
		rep := runSync(t, a, ldapauth.SyncOptions{})
		assert.Equal(t, 1, rep.Pages)
		assert.Equal(t, []string{slapdtest.GeneratedUID(1)}, rep.UsersRemoved)
	})
}

func TestSyncOpenLDAPInterruptedPagedRead(t *testing.T) {
	srv := slapdtest.StartWith(t, slapdtest.Options{GeneratedUsers: 1000})
	store := seededStore(t, srv)
	before := snapshot(t, store)
	t.Run("cancelled after two pages", func(t *testing.T) {
		a := syncAuth(t, slapdSyncVars(srv, slapdtest.ServiceDN, slapdtest.ServicePassword, map[string]string{"LDAP_SYNC_PAGE_SIZE": "100"}), store)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		rep, err := a.Sync(ctx, ldapauth.SyncOptions{Force: true, Progress: func(p ldapauth.SyncProgress) {
			if p.Pages == 2 {
				cancel()
			}
		}})
		require.ErrorIs(t, err, ldapauth.ErrSyncAborted)
		require.ErrorIs(t, err, context.Canceled)
		assert.Nil(t, rep)
		assert.Equal(t, before, snapshot(t, store))
	})
	t.Run("connection cut in the third page", func(t *testing.T) {
		proxy := faultproxy.Start(t, strings.TrimPrefix(srv.URL, "ldap://"))
		a := syncAuth(t, slapdSyncVars(srv, slapdtest.ServiceDN, slapdtest.ServicePassword, map[string]string{
			"LDAP_AUTH_URL": proxy.URL(), "LDAP_SYNC_PAGE_SIZE": "100"}), store)
		var pages int
		probe, err := a.Sync(context.Background(), ldapauth.SyncOptions{DryRun: true, Force: true})
		require.NoError(t, err)
		require.Equal(t, 11, probe.Pages)

		proxy.CutAfter(25_000) // pages of 100 entries are about 10 kB here
		_, err = a.Sync(context.Background(), ldapauth.SyncOptions{Force: true, Progress: func(p ldapauth.SyncProgress) { pages = p.Pages }})
		require.ErrorIs(t, err, ldapauth.ErrSyncAborted)
		require.ErrorIs(t, err, ldapauth.ErrUnavailable)
		var aerr *ldapauth.SyncAbortError
		require.ErrorAs(t, err, &aerr)
		assert.Greater(t, aerr.Page, 1, "cut after the first page")
		assert.Equal(t, aerr.Page-1, pages)
		assert.Equal(t, before, snapshot(t, store))
	})
}

// With nested groups a login counts carol in nested-parent (through
// nested-child); the sync, whose direct rule says otherwise, must confirm
// as a login does and keep her there.
func TestSyncOpenLDAPNestedGroupsKept(t *testing.T) {
	srv := slapdtest.Start(t)
	store := ldapauth.NewMemStore()
	parent := slapdtest.GroupDN("nested-parent")
	a := syncAuth(t, slapdSyncVars(srv, slapdtest.ServiceDN, slapdtest.ServicePassword, map[string]string{
		"LDAP_SYNCED_GROUPS":      parent,
		"LDAP_AUTH_NESTED_GROUPS": "walk",
	}), store)
	login(t, a, "carol")
	members, _ := store.Members(parent)
	require.Equal(t, []string{"carol"}, members, "the login counts the nested membership")

	rep := runSync(t, a, ldapauth.SyncOptions{})
	assert.Zero(t, rep.Counts.Changes(), "%s", rep)
	members, _ = store.Members(parent)
	assert.Equal(t, []string{"carol"}, members)

	srv.AddMember(t, "nested-child", slapdtest.UserDN("alice")) // a groupOfNames keeps one member
	srv.RemoveMember(t, "nested-child", slapdtest.UserDN("carol"))
	rep = runSync(t, a, ldapauth.SyncOptions{})
	assert.Equal(t, []ldapauth.Membership{{GroupDN: parent, Username: "carol"}}, rep.MembershipsRemoved, "out of the child, out of the parent")
}
