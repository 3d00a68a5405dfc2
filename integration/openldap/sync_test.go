package openldap_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/go-ldap/ldap/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/internal/slapdtest"
	"github.com/go-ldapauth/ldapauth/storetest"
)

// The sync job (Flagsmith's sync_ldap_users_and_groups, Authenticator.Sync)
// against real slapd. Every test changes the directory or needs its own
// size, so each starts its own server.

// jobEnv is flagsmithEnv plus the sync job's variables: the group syncer
// with readers and marvel, bound as account. extra adds or overrides
// variables, as name, value pairs.
func jobEnv(srv *slapdtest.Server, account, password string, extra ...string) map[string]string {
	return flagsmithEnv(srv.URL, append([]string{
		"LDAP_AUTH_SYNC_USER_RELATIONS", "flagsmith_ldap.ldap.sync_user_groups",
		"LDAP_DEFAULT_FLAGSMITH_ORGANISATION_ID", "1",
		"LDAP_SYNCED_GROUPS", slapdtest.GroupDN("readers") + ":" + slapdtest.GroupDN("marvel"),
		"LDAP_SYNC_USER_USERNAME", account,
		"LDAP_SYNC_USER_PASSWORD", password,
	}, extra...)...)
}

// syncAuth is newAuth writing into store.
func syncAuth(t *testing.T, env map[string]string, store *ldapauth.MemStore) *ldapauth.Authenticator {
	t.Helper()
	cfg, err := ldapauth.LoadConfig(func(name string) (string, bool) {
		v, ok := env[name]
		return v, ok
	})
	require.NoError(t, err, "LoadConfig")
	cfg.Store = store
	a, err := ldapauth.New(cfg)
	require.NoError(t, err, "New")
	t.Cleanup(func() { _ = a.Close() })
	return a
}

// loginAll logs the seed users in (password slapdtest.Password), so the
// store holds them as a Flagsmith deployment would.
func loginAll(t *testing.T, a *ldapauth.Authenticator, uids ...string) {
	t.Helper()
	for _, uid := range uids {
		_, err := login(a, uid, slapdtest.Password(uid))
		require.NoError(t, err, uid)
	}
}

func runSync(t *testing.T, a *ldapauth.Authenticator, opts ldapauth.SyncOptions) *ldapauth.SyncReport {
	t.Helper()
	rep, err := a.Sync(context.Background(), opts)
	require.NoError(t, err)
	require.NotNil(t, rep)
	return rep
}

func snapshot(t *testing.T, s *ldapauth.MemStore) *storetest.Contents {
	t.Helper()
	snap, err := storetest.Read(context.Background(), s)
	require.NoError(t, err)
	return snap
}

// members returns the store's members of the group cn.
func members(s *ldapauth.MemStore, cn string) []string {
	m, _ := storetest.Members(s, slapdtest.GroupDN(cn))
	return m
}

// 5,000 generated users (all in readers) and the seed, read in pages below
// and above slapd's default size limit (500) by each kind of sync account:
// svc (no limit) reads them all either way; svc-limited (500, which also
// caps the total of a paged search: size.prtotal defaults to the hard
// limit) aborts whatever the page size, naming LDAP_SYNC_PAGE_SIZE, and
// removes nothing even forced; svc-nopaging (the paged results control
// refused) aborts when paging and works with paging off.
func TestSyncPaging(t *testing.T) {
	const generated = 5000
	srv := slapdtest.StartWith(t, slapdtest.Options{GeneratedUsers: generated, GeneratedUserGroups: []string{"readers"}})
	const users = generated + 7 // and the seed users

	// Each subtest stands alone: these fill a store of their own.
	for _, tt := range []struct {
		pageSize string
		pages    int
	}{{"400", 13}, {"1000", 6}} {
		t.Run("svc, pages of "+tt.pageSize, func(t *testing.T) {
			store := ldapauth.NewMemStore()
			a := syncAuth(t, jobEnv(srv, slapdtest.ServiceDN, slapdtest.ServicePassword, "LDAP_SYNC_PAGE_SIZE", tt.pageSize), store)
			var perPage []int
			rep := runSync(t, a, ldapauth.SyncOptions{CreateUsers: true, Progress: func(p ldapauth.SyncProgress) {
				if p.Phase == "read users" && p.Pages > 0 {
					perPage = append(perPage, p.Users)
				}
			}})
			assert.Equal(t, tt.pages, rep.Pages)
			require.Len(t, perPage, tt.pages)
			size, _ := strconv.Atoi(tt.pageSize)
			assert.Equal(t, size, perPage[0], "entries arrive page by page")
			assert.Equal(t, users, perPage[len(perPage)-1])
			assert.Equal(t, users, rep.DirectoryUsers)
			assert.Len(t, rep.UsersCreated, users)
			assert.Equal(t, users, len(snapshot(t, store).Users))
			assert.Len(t, members(store, "readers"), generated+2, "the generated users and alice, bob")

			again := runSync(t, a, ldapauth.SyncOptions{})
			assert.Equal(t, tt.pages, again.Pages)
			assert.Zero(t, again.Changes(), "a second run changes nothing: %s", again)
		})
	}

	// The others start from a store a complete read filled; then
	// user000001 leaves the directory, so a complete read would remove it.
	fill := func() *ldapauth.MemStore {
		store := ldapauth.NewMemStore()
		runSync(t, syncAuth(t, jobEnv(srv, slapdtest.ServiceDN, slapdtest.ServicePassword), store), ldapauth.SyncOptions{CreateUsers: true})
		require.NotNil(t, storetest.User(store, slapdtest.GeneratedUID(1)))
		return store
	}
	store, unpaged := fill(), fill()
	srv.DeleteUser(t, slapdtest.GeneratedUID(1))
	before := snapshot(t, store)
	for _, tt := range []struct {
		name, account, password, pageSize string
		code                              uint16
	}{
		{"svc-limited, pages of 400", slapdtest.LimitedServiceDN, slapdtest.LimitedServicePassword, "400", ldap.LDAPResultSizeLimitExceeded},
		{"svc-limited, pages of 1000", slapdtest.LimitedServiceDN, slapdtest.LimitedServicePassword, "1000", ldap.LDAPResultSizeLimitExceeded},
		{"svc-limited, unpaged", slapdtest.LimitedServiceDN, slapdtest.LimitedServicePassword, "off", ldap.LDAPResultSizeLimitExceeded},
		{"svc-nopaging, pages of 400", slapdtest.NoPagingServiceDN, slapdtest.NoPagingServicePassword, "400", ldap.LDAPResultAdminLimitExceeded},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := syncAuth(t, jobEnv(srv, tt.account, tt.password, "LDAP_SYNC_PAGE_SIZE", tt.pageSize), store)
			rep, err := a.Sync(context.Background(), ldapauth.SyncOptions{Force: true})
			require.ErrorIs(t, err, ldapauth.ErrSyncAborted)
			assert.True(t, ldap.IsErrorWithCode(err, tt.code), "%v", err)
			var aerr *ldapauth.SyncAbortError
			require.ErrorAs(t, err, &aerr)
			assert.Equal(t, "read users", aerr.Phase)
			assert.Equal(t, []string{"LDAP_SYNC_PAGE_SIZE"}, aerr.Variables, "the error names the setting that may fix it: %v", err)
			assert.Nil(t, rep)
			assert.Equal(t, before, snapshot(t, store), "nothing removed, even forced")
		})
	}
	t.Run("svc-nopaging, paging off", func(t *testing.T) {
		a := syncAuth(t, jobEnv(srv, slapdtest.NoPagingServiceDN, slapdtest.NoPagingServicePassword, "LDAP_SYNC_PAGE_SIZE", "off"), unpaged)
		rep := runSync(t, a, ldapauth.SyncOptions{})
		assert.Equal(t, 1, rep.Pages)
		assert.Equal(t, users-1, rep.DirectoryUsers)
		assert.Equal(t, []string{slapdtest.GeneratedUID(1)}, rep.UsersRemoved)
		assert.Nil(t, storetest.User(unpaged, slapdtest.GeneratedUID(1)))
	})
}

// Users and groups that change in the directory, carried over by the sync;
// what is not the sync's to remove is left alone.
func TestSyncDirectoryChanges(t *testing.T) {
	srv := slapdtest.Start(t)
	store := ldapauth.NewMemStore()
	a := syncAuth(t, jobEnv(srv, slapdtest.ServiceDN, slapdtest.ServicePassword), store)
	loginAll(t, a, "alice", "bob", "carol", "jürgen")
	readers, marvel := slapdtest.GroupDN("readers"), slapdtest.GroupDN("marvel")
	rep := runSync(t, a, ldapauth.SyncOptions{})
	require.Zero(t, rep.Changes(), "%s", rep)

	srv.DeleteUser(t, "jürgen")
	srv.DeleteUser(t, "erin") // never logged in: not directory-managed
	srv.AddMember(t, "readers", slapdtest.UserDN("carol"))
	srv.RemoveMember(t, "readers", slapdtest.UserDN("bob"))
	rep = runSync(t, a, ldapauth.SyncOptions{})
	assert.Equal(t, []string{"jürgen"}, rep.UsersRemoved)
	assert.Equal(t, []ldapauth.Membership{{GroupDN: readers, Username: "carol"}}, rep.MembershipsAdded)
	assert.Equal(t, []ldapauth.Membership{{GroupDN: readers, Username: "bob"}}, rep.MembershipsRemoved)
	assert.Equal(t, []string{"alice", "carol"}, members(store, "readers"))
	assert.Equal(t, []string{"bob", "carol"}, members(store, "marvel"), "left one group, still in the other")

	// A deleted group: slapd answers noSuchObject, a definitive "gone".
	admin := srv.Admin(t)
	require.NoError(t, admin.Del(ldap.NewDelRequest(marvel, nil)))
	rep = runSync(t, a, ldapauth.SyncOptions{})
	assert.Equal(t, []ldapauth.Group{{DN: marvel, Name: "marvel"}}, rep.GroupsRemoved)
	assert.Empty(t, rep.MembershipsRemoved, "the group goes with its memberships")
	_, ok := storetest.GroupOf(store, marvel)
	assert.False(t, ok)
	_, ok = storetest.GroupOf(store, readers)
	assert.True(t, ok)

	again := runSync(t, a, ldapauth.SyncOptions{})
	assert.Zero(t, again.Changes(), "a second run changes nothing: %s", again)

	t.Run("a group dropped from LDAP_SYNCED_GROUPS", func(t *testing.T) {
		a := syncAuth(t, jobEnv(srv, slapdtest.ServiceDN, slapdtest.ServicePassword,
			"LDAP_SYNCED_GROUPS", slapdtest.GroupDN("ldapusers")), store)
		rep := runSync(t, a, ldapauth.SyncOptions{})
		assert.Equal(t, []ldapauth.Notice{{DN: readers, Reason: "not in " + "LDAP_SYNCED_GROUPS"}}, rep.GroupsLeftAlone)
		assert.Empty(t, rep.GroupsRemoved)
		assert.Equal(t, []string{"alice", "carol"}, members(store, "readers"), "left alone, members included")
	})
}

// With the login group, leaving it counts as removal from the directory.
func TestSyncLeftLoginGroup(t *testing.T) {
	srv := slapdtest.Start(t)
	store := ldapauth.NewMemStore()
	a := syncAuth(t, jobEnv(srv, slapdtest.ServiceDN, slapdtest.ServicePassword,
		"LDAP_AUTH_FORMAT_SEARCH_FILTERS", "flagsmith_ldap.ldap.login_group_search_filter",
		"LDAP_LOGIN_GROUP", slapdtest.GroupDN("ldapusers")), store)
	loginAll(t, a, "alice", "carol", "jürgen")

	srv.RemoveMember(t, "ldapusers", slapdtest.UserDN("carol"))
	rep := runSync(t, a, ldapauth.SyncOptions{})
	assert.Equal(t, []string{"carol"}, rep.UsersRemoved)
	assert.Nil(t, storetest.User(store, "carol"))
	assert.Empty(t, members(store, "marvel"), "carol's membership went with her user")
	assert.Equal(t, []string{"alice", "jürgen"}, snapshot(t, store).Users)
}

// A login group reached only through nesting (walk): the login admits
// carol (in nested-child, in nested-parent) although (memberOf=nested-parent)
// does not find her, so the sync must not remove her; once out of the
// child she is out of the login group and removed.
func TestSyncNestedLoginGroup(t *testing.T) {
	srv := slapdtest.Start(t)
	store := ldapauth.NewMemStore()
	a := syncAuth(t, jobEnv(srv, slapdtest.ServiceDN, slapdtest.ServicePassword,
		"LDAP_AUTH_FORMAT_SEARCH_FILTERS", "flagsmith_ldap.ldap.login_group_search_filter",
		"LDAP_LOGIN_GROUP", slapdtest.GroupDN("nested-parent"),
		"LDAP_AUTH_NESTED_GROUPS", "walk"), store)
	loginAll(t, a, "carol")

	rep := runSync(t, a, ldapauth.SyncOptions{})
	assert.Zero(t, rep.Changes(), "%s", rep)
	assert.NotNil(t, storetest.User(store, "carol"))

	srv.AddMember(t, "nested-child", slapdtest.UserDN("alice")) // a groupOfNames keeps one member
	srv.RemoveMember(t, "nested-child", slapdtest.UserDN("carol"))
	// carol is the store's only user: removing her trips the removal
	// guard's empty-directory rule, hence Force.
	rep = runSync(t, a, ldapauth.SyncOptions{Force: true})
	assert.Equal(t, []string{"carol"}, rep.UsersRemoved)
	assert.Nil(t, storetest.User(store, "carol"))
}

// With nested groups a login counts carol in nested-parent (through
// nested-child); the sync, whose direct rule says otherwise, must confirm
// as a login does and keep her there.
func TestSyncNestedGroupsKept(t *testing.T) {
	srv := slapdtest.Start(t)
	store := ldapauth.NewMemStore()
	parent := slapdtest.GroupDN("nested-parent")
	a := syncAuth(t, jobEnv(srv, slapdtest.ServiceDN, slapdtest.ServicePassword,
		"LDAP_SYNCED_GROUPS", parent,
		"LDAP_AUTH_NESTED_GROUPS", "walk"), store)
	loginAll(t, a, "carol")
	require.Equal(t, []string{"carol"}, members(store, "nested-parent"), "the login counts the nested membership")

	rep := runSync(t, a, ldapauth.SyncOptions{})
	assert.Zero(t, rep.Changes(), "%s", rep)
	assert.Equal(t, []string{"carol"}, members(store, "nested-parent"))

	srv.AddMember(t, "nested-child", slapdtest.UserDN("alice")) // a groupOfNames keeps one member
	srv.RemoveMember(t, "nested-child", slapdtest.UserDN("carol"))
	rep = runSync(t, a, ldapauth.SyncOptions{})
	assert.Equal(t, []ldapauth.Membership{{GroupDN: parent, Username: "carol"}}, rep.MembershipsRemoved, "out of the child, out of the parent")
}

// A user in no group has no memberOf: its memberships come from the group
// entries, each read once.
func TestSyncEntryWithoutMemberOf(t *testing.T) {
	srv := slapdtest.Start(t)
	srv.AddUser(t, "loner", slapdtest.Password("loner"))
	store := ldapauth.NewMemStore()
	a := syncAuth(t, jobEnv(srv, slapdtest.ServiceDN, slapdtest.ServicePassword), store)
	loginAll(t, a, "loner", "bob")
	var groupsRead int
	rep := runSync(t, a, ldapauth.SyncOptions{Progress: func(p ldapauth.SyncProgress) { groupsRead = max(groupsRead, p.Groups) }})
	assert.Zero(t, rep.Changes(), "%s", rep)
	assert.Equal(t, 2, groupsRead, "each synced group's entry, once")
	assert.NotNil(t, storetest.User(store, "loner"))

	srv.AddMember(t, "readers", slapdtest.UserDN("loner"))
	rep = runSync(t, a, ldapauth.SyncOptions{})
	assert.Equal(t, []ldapauth.Membership{{GroupDN: slapdtest.GroupDN("readers"), Username: "loner"}}, rep.MembershipsAdded)
}

// LDAP_SYNC_USER_USERNAME as a DN is used verbatim; a plain name goes
// through the username formatter (uid=<name>,<search base>); a wrong
// password is the service account's failure, not a user's.
func TestSyncAccount(t *testing.T) {
	srv := slapdtest.Start(t)
	tests := []struct {
		name, account, password string
		users                   int // entries the account may read
		err                     error
	}{
		{"DN", slapdtest.ServiceDN, slapdtest.ServicePassword, 7, nil},
		// uid=alice,ou=people,...: the ACL lets a person read only her own entry.
		{"plain name through the formatter", "alice", slapdtest.Password("alice"), 1, nil},
		{"wrong password", slapdtest.ServiceDN, "wrong-password", 0, ldapauth.ErrServiceAccount},
		{"plain name, wrong password", "alice", "wrong-password", 0, ldapauth.ErrServiceAccount},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := ldapauth.NewMemStore()
			a := syncAuth(t, jobEnv(srv, tt.account, tt.password), store)
			rep, err := a.Sync(context.Background(), ldapauth.SyncOptions{DryRun: true, CreateUsers: true})
			if tt.err == nil {
				require.NoError(t, err)
				assert.Equal(t, tt.users, rep.DirectoryUsers)
				return
			}
			require.ErrorIs(t, err, ldapauth.ErrSyncAborted)
			require.ErrorIs(t, err, tt.err)
			assert.NotErrorIs(t, err, ldapauth.ErrInvalidCredentials)
			assert.NotContains(t, err.Error(), "wrong-password")
			var aerr *ldapauth.SyncAbortError
			require.ErrorAs(t, err, &aerr)
			assert.Equal(t, "bind", aerr.Phase)
		})
	}
}

// slapd restarted in the middle of the paged read: the connection is gone,
// the sync aborts with ErrUnavailable and removes nothing, even forced; the
// next run, against the restarted server, completes.
func TestSyncServerRestartMidway(t *testing.T) {
	srv := slapdtest.StartWith(t, slapdtest.Options{GeneratedUsers: 1000})
	store := ldapauth.NewMemStore()
	a := syncAuth(t, jobEnv(srv, slapdtest.ServiceDN, slapdtest.ServicePassword, "LDAP_SYNC_PAGE_SIZE", "100"), store)
	runSync(t, a, ldapauth.SyncOptions{CreateUsers: true})
	srv.DeleteUser(t, slapdtest.GeneratedUID(1))
	before := snapshot(t, store)

	rep, err := a.Sync(context.Background(), ldapauth.SyncOptions{Force: true, Progress: func(p ldapauth.SyncProgress) {
		if p.Phase == "read users" && p.Pages == 2 {
			srv.Restart(t)
		}
	}})
	require.ErrorIs(t, err, ldapauth.ErrSyncAborted)
	require.ErrorIs(t, err, ldapauth.ErrUnavailable)
	var aerr *ldapauth.SyncAbortError
	require.ErrorAs(t, err, &aerr)
	// Page 3 was asked for as page 2 came, before the restart in its
	// handling: it may have come, and then page 4 fails.
	assert.Contains(t, []int{3, 4}, aerr.Page, "a page after the restart")
	assert.Nil(t, rep)
	assert.Equal(t, before, snapshot(t, store), "nothing removed")

	rep = runSync(t, a, ldapauth.SyncOptions{})
	assert.Equal(t, []string{slapdtest.GeneratedUID(1)}, rep.UsersRemoved)
}
