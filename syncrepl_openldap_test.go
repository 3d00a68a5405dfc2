package ldapauth_test

import (
	"context"
	"encoding/json"
	"errors"
	"iter"
	"log/slog"
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/internal/slapdtest"
	"github.com/go-ldapauth/ldapauth/storetest"
)

// Change-driven sync (SyncChanges) against real OpenLDAP with the syncprov
// overlay: what each kind of directory change does to the store, and the
// fallbacks.

func syncChanges(t *testing.T, a *ldapauth.Authenticator, opts ldapauth.SyncOptions) *ldapauth.SyncReport {
	t.Helper()
	rep, err := a.SyncChanges(context.Background(), opts)
	require.NoError(t, err)
	require.NotNil(t, rep)
	require.NotNil(t, rep.ChangeSync)
	require.True(t, rep.Applied)
	return rep
}

func members(t *testing.T, store *ldapauth.MemStore, group string) []string {
	t.Helper()
	m, _ := storetest.Members(store, slapdtest.GroupDN(group))
	return m
}

func TestSyncChangesOpenLDAP(t *testing.T) {
	for _, tc := range []struct {
		name       string
		sessionLog int
		phase      string // how the deletion is learnt
	}{
		{"present phase", 0, "present"},
		{"delete phase", 100, "delete"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := slapdtest.StartWith(t, slapdtest.Options{SyncProv: true, SessionLog: tc.sessionLog})
			store := ldapauth.NewMemStore()
			a := syncAuth(t, slapdSyncVars(srv, slapdtest.ServiceDN, slapdtest.ServicePassword, nil), store)
			opts := ldapauth.SyncOptions{CreateUsers: true}

			rep := syncChanges(t, a, opts)
			assert.Equal(t, "full refresh", rep.ChangeSync.Mode)
			assert.Contains(t, rep.ChangeSync.Fallback, "no sync state yet")
			assert.True(t, rep.ChangeSync.StateSaved)
			require.Len(t, snapshot(t, store).Users, 7)
			assert.Equal(t, []string{"alice", "bob"}, members(t, store, "readers"))

			t.Run("nothing changed", func(t *testing.T) {
				before := snapshot(t, store)
				rep := syncChanges(t, a, opts)
				assert.Equal(t, "incremental", rep.ChangeSync.Mode)
				assert.Empty(t, rep.ChangeSync.Fallback)
				assert.Zero(t, rep.ChangeSync.Changed)
				assert.Zero(t, rep.ChangeSync.Deleted)
				assert.Zero(t, rep.Changes())
				assert.Equal(t, 7, rep.DirectoryUsers)
				assert.Equal(t, before, snapshot(t, store))
			})
			t.Run("create", func(t *testing.T) {
				srv.AddUser(t, "frank", "frank-password", "readers")
				rep := syncChanges(t, a, opts)
				assert.Equal(t, "incremental", rep.ChangeSync.Mode)
				assert.Equal(t, 1, rep.ChangeSync.Changed, "only the new entry is read")
				assert.Equal(t, []string{"frank"}, rep.UsersCreated)
				assert.Empty(t, rep.UsersRemoved)
				require.NotNil(t, storetest.User(store, "frank"))
				assert.Equal(t, []string{"alice", "bob", "frank"}, members(t, store, "readers"))
			})
			t.Run("modify", func(t *testing.T) {
				mod := ldap.NewModifyRequest(slapdtest.UserDN("alice"), nil)
				mod.Replace("mail", []string{"alice@elsewhere.example"})
				require.NoError(t, srv.Admin(t).Modify(mod))
				rep := syncChanges(t, a, opts)
				assert.Equal(t, 1, rep.ChangeSync.Changed)
				assert.Equal(t, []string{"alice"}, rep.UsersUpdated)
				assert.Equal(t, "alice@elsewhere.example", storetest.User(store, "alice").Fields["email"])
				assert.Len(t, snapshot(t, store).Users, 8)
			})
			t.Run("modrdn", func(t *testing.T) {
				require.NoError(t, srv.Admin(t).ModifyDN(ldap.NewModifyDNRequest(slapdtest.UserDN("bob"), "uid=bobby", true, "")))
				rep := syncChanges(t, a, opts)
				// The username is the RDN: the full sync's rule, bob is
				// gone and bobby is new.
				assert.Equal(t, []string{"bob"}, rep.UsersRemoved)
				assert.Equal(t, []string{"bobby"}, rep.UsersCreated)
				assert.Nil(t, storetest.User(store, "bob"))
				require.NotNil(t, storetest.User(store, "bobby"))
				assert.Equal(t, slapdtest.UserDN("bobby"), storetest.User(store, "bobby").DN)
				assert.Contains(t, members(t, store, "marvel"), "bobby")
			})
			t.Run("delete", func(t *testing.T) {
				srv.DeleteUser(t, "carol")
				rep := syncChanges(t, a, opts)
				assert.Equal(t, tc.phase, rep.ChangeSync.Phase)
				assert.Equal(t, 1, rep.ChangeSync.Deleted)
				assert.Equal(t, []string{"carol"}, rep.UsersRemoved)
				assert.Nil(t, storetest.User(store, "carol"))
				assert.NotContains(t, members(t, store, "marvel"), "carol")
			})
			t.Run("group join and leave", func(t *testing.T) {
				// The memberof overlay's memberOf writes change no
				// entryCSN: only the groups' entries show the change.
				srv.AddMember(t, "marvel", slapdtest.UserDN("alice"))
				srv.RemoveMember(t, "readers", slapdtest.UserDN("alice"))
				rep := syncChanges(t, a, opts)
				assert.Equal(t, []ldapauth.Membership{{GroupDN: slapdtest.GroupDN("marvel"), Username: "alice"}}, rep.MembershipsAdded)
				assert.Equal(t, []ldapauth.Membership{{GroupDN: slapdtest.GroupDN("readers"), Username: "alice"}}, rep.MembershipsRemoved)
				assert.Contains(t, members(t, store, "marvel"), "alice")
				assert.NotContains(t, members(t, store, "readers"), "alice")
			})
			t.Run("same as a full sync", func(t *testing.T) {
				rep := runSync(t, a, ldapauth.SyncOptions{CreateUsers: true, DryRun: true})
				assert.Zero(t, rep.Changes(), "the full sync finds nothing the change-driven runs missed:\n%s", rep)
			})
		})
	}
}

func TestSyncChangesOpenLDAPLoginGroup(t *testing.T) {
	srv := slapdtest.StartWith(t, slapdtest.Options{SyncProv: true, SessionLog: 100})
	store := ldapauth.NewMemStore()
	a := syncAuth(t, slapdSyncVars(srv, slapdtest.ServiceDN, slapdtest.ServicePassword, map[string]string{
		"LDAP_LOGIN_GROUP":                slapdtest.GroupDN("ldapusers"),
		"LDAP_AUTH_FORMAT_SEARCH_FILTERS": "flagsmith_ldap.ldap.login_group_search_filter"}), store)
	opts := ldapauth.SyncOptions{CreateUsers: true}
	syncChanges(t, a, opts)
	require.NotNil(t, storetest.User(store, "carol"))
	require.Nil(t, storetest.User(store, "bob"), "bob is not in the login group")

	srv.RemoveMember(t, "ldapusers", slapdtest.UserDN("carol"))
	srv.AddMember(t, "ldapusers", slapdtest.UserDN("bob"))
	rep := syncChanges(t, a, opts)
	assert.Equal(t, "incremental", rep.ChangeSync.Mode)
	assert.Equal(t, []string{"carol"}, rep.UsersRemoved, "a user leaving the login group is removed")
	assert.Equal(t, []string{"bob"}, rep.UsersCreated, "a user joining it is created, as the full sync would")
	assert.Nil(t, storetest.User(store, "carol"))
	assert.Contains(t, members(t, store, "marvel"), "bob")

	full := runSync(t, a, ldapauth.SyncOptions{CreateUsers: true, DryRun: true})
	assert.Zero(t, full.Changes(), "%s", full)
}

func TestSyncChangesOpenLDAPRemovalGuard(t *testing.T) {
	srv := slapdtest.StartWith(t, slapdtest.Options{SyncProv: true, SessionLog: 100, GeneratedUsers: 40})
	store := ldapauth.NewMemStore()
	a := syncAuth(t, slapdSyncVars(srv, slapdtest.ServiceDN, slapdtest.ServicePassword, nil), store)
	syncChanges(t, a, ldapauth.SyncOptions{CreateUsers: true})
	for i := 1; i <= 20; i++ {
		srv.DeleteUser(t, slapdtest.GeneratedUID(i))
	}
	before := snapshot(t, store)
	state, err := store.LoadSyncState(context.Background())
	require.NoError(t, err)
	for range 2 { // refused again: the cookie did not move on
		rep, err := a.SyncChanges(context.Background(), ldapauth.SyncOptions{CreateUsers: true})
		var guard *ldapauth.SyncAbortError
		require.ErrorAs(t, err, &guard)
		assert.Equal(t, "removal guard", guard.Phase)
		assert.Equal(t, 20, rep.RemovalGuard.Users.Remove)
		require.NotNil(t, rep)
		assert.False(t, rep.Applied)
		assert.Equal(t, "incremental", rep.ChangeSync.Mode)
		assert.False(t, rep.ChangeSync.StateSaved)
		assert.Equal(t, before, snapshot(t, store), "nothing written")
		after, err := store.LoadSyncState(context.Background())
		require.NoError(t, err)
		assert.Equal(t, state, after, "the cookie is not saved")
	}
	rep := syncChanges(t, a, ldapauth.SyncOptions{CreateUsers: true, Force: true})
	assert.Len(t, rep.UsersRemoved, 20)
	assert.Len(t, snapshot(t, store).Users, 27)
}

// cookieState replaces the cookie of the stored state.
func cookieState(t *testing.T, store *ldapauth.MemStore, cookie string) {
	t.Helper()
	raw, err := store.LoadSyncState(context.Background())
	require.NoError(t, err)
	var st map[string]any
	require.NoError(t, json.Unmarshal(raw, &st))
	st["cookie"] = []byte(cookie)
	raw, err = json.Marshal(st)
	require.NoError(t, err)
	require.NoError(t, store.SaveSyncState(context.Background(), raw))
}

func TestSyncChangesOpenLDAPCookieRefused(t *testing.T) {
	t.Run("expired: e-syncRefreshRequired", func(t *testing.T) {
		// The reload hint honoured: a cookie older than the session log
		// and than every entry (as after the directory was reloaded, or
		// a job idle for long) is stale.
		srv := slapdtest.StartWith(t, slapdtest.Options{SyncProv: true, SessionLog: 2, ReloadHint: true, GeneratedUsers: 100})
		store := ldapauth.NewMemStore()
		a := syncAuth(t, slapdSyncVars(srv, slapdtest.ServiceDN, slapdtest.ServicePassword, nil), store)
		syncChanges(t, a, ldapauth.SyncOptions{CreateUsers: true})
		cookieState(t, store, "rid=000,csn=20000101000000.000000Z#000000#000#000000")
		for i := 1; i <= 5; i++ {
			srv.DeleteUser(t, slapdtest.GeneratedUID(i))
		}
		rep := syncChanges(t, a, ldapauth.SyncOptions{CreateUsers: true})
		assert.Equal(t, "full refresh", rep.ChangeSync.Mode)
		assert.Contains(t, rep.ChangeSync.Fallback, "e-syncRefreshRequired")
		assert.Len(t, rep.UsersRemoved, 5)
		assert.Contains(t, rep.String(), "read in full: the directory refused the stored cookie")
		// And the new cookie works.
		srv.DeleteUser(t, slapdtest.GeneratedUID(6))
		rep = syncChanges(t, a, ldapauth.SyncOptions{CreateUsers: true})
		assert.Equal(t, "incremental", rep.ChangeSync.Mode)
		assert.Equal(t, []string{slapdtest.GeneratedUID(6)}, rep.UsersRemoved)
	})
	t.Run("ahead of the directory", func(t *testing.T) {
		// As after a restore from an older backup.
		srv := slapdtest.StartWith(t, slapdtest.Options{SyncProv: true, SessionLog: 100})
		store := ldapauth.NewMemStore()
		a := syncAuth(t, slapdSyncVars(srv, slapdtest.ServiceDN, slapdtest.ServicePassword, nil), store)
		syncChanges(t, a, ldapauth.SyncOptions{CreateUsers: true})
		cookieState(t, store, "rid=000,csn=20990101000000.000000Z#000000#000#000000")
		srv.DeleteUser(t, "carol")
		rep := syncChanges(t, a, ldapauth.SyncOptions{CreateUsers: true})
		assert.Equal(t, "full refresh", rep.ChangeSync.Mode)
		assert.Contains(t, rep.ChangeSync.Fallback, "consumer state is newer than provider")
		assert.Equal(t, []string{"carol"}, rep.UsersRemoved)
		assert.Nil(t, storetest.User(store, "carol"))
	})
	t.Run("other search settings", func(t *testing.T) {
		srv := slapdtest.StartWith(t, slapdtest.Options{SyncProv: true, SessionLog: 100})
		store := ldapauth.NewMemStore()
		a := syncAuth(t, slapdSyncVars(srv, slapdtest.ServiceDN, slapdtest.ServicePassword, nil), store)
		syncChanges(t, a, ldapauth.SyncOptions{CreateUsers: true})
		b := syncAuth(t, slapdSyncVars(srv, slapdtest.ServiceDN, slapdtest.ServicePassword, map[string]string{
			"LDAP_LOGIN_GROUP":                slapdtest.GroupDN("ldapusers"),
			"LDAP_AUTH_FORMAT_SEARCH_FILTERS": "flagsmith_ldap.ldap.login_group_search_filter"}), store)
		rep := syncChanges(t, b, ldapauth.SyncOptions{CreateUsers: true, Force: true})
		assert.Equal(t, "full refresh", rep.ChangeSync.Mode)
		assert.Contains(t, rep.ChangeSync.Fallback, "search settings changed")
		assert.ElementsMatch(t, []string{"bob", "dave", "erin"}, rep.UsersRemoved)
	})
}

func TestSyncChangesOpenLDAPWithoutSyncProv(t *testing.T) {
	srv := slapdtest.Start(t)
	store := ldapauth.NewMemStore()
	a := syncAuth(t, slapdSyncVars(srv, slapdtest.ServiceDN, slapdtest.ServicePassword, nil), store)
	for range 2 {
		rep := syncChanges(t, a, ldapauth.SyncOptions{CreateUsers: true})
		assert.Equal(t, "full sync", rep.ChangeSync.Mode)
		assert.Contains(t, rep.ChangeSync.Fallback, "syncprov")
		assert.False(t, rep.ChangeSync.StateSaved)
		assert.Len(t, snapshot(t, store).Users, 7)
	}
	state, err := store.LoadSyncState(context.Background())
	require.NoError(t, err)
	assert.Nil(t, state)
}

// failingStore fails its writes while fail is set, as a database going
// away in the middle of a run would: the batches the sync applies through
// (MemStore is a BatchStore) and DeleteUser.
type failingStore struct {
	*ldapauth.MemStore
	fail bool
}

func (s *failingStore) DeleteUser(ctx context.Context, name string) error {
	if s.fail {
		return errors.New("database gone")
	}
	return s.MemStore.DeleteUser(ctx, name)
}

func (s *failingStore) ApplyBatch(ctx context.Context, b *ldapauth.Batch) error {
	if s.fail {
		return errors.New("database gone")
	}
	return s.MemStore.ApplyBatch(ctx, b)
}

func TestSyncChangesOpenLDAPResume(t *testing.T) {
	srv := slapdtest.StartWith(t, slapdtest.Options{SyncProv: true, SessionLog: 100})
	store := &failingStore{MemStore: ldapauth.NewMemStore()}
	a := syncAuth(t, slapdSyncVars(srv, slapdtest.ServiceDN, slapdtest.ServicePassword, nil), store)
	syncChanges(t, a, ldapauth.SyncOptions{CreateUsers: true})

	t.Run("directory restarted between runs", func(t *testing.T) {
		srv.DeleteUser(t, "erin")
		srv.Restart(t)
		rep := syncChanges(t, a, ldapauth.SyncOptions{CreateUsers: true})
		assert.Equal(t, "incremental", rep.ChangeSync.Mode, "the cookie outlives the restart")
		assert.Equal(t, []string{"erin"}, rep.UsersRemoved)
	})
	t.Run("run stopped while applying", func(t *testing.T) {
		srv.DeleteUser(t, "dave")
		srv.AddUser(t, "frank", "frank-password", "readers")
		store.fail = true
		rep, err := a.SyncChanges(context.Background(), ldapauth.SyncOptions{CreateUsers: true})
		var storeErr *ldapauth.StoreError
		require.ErrorAs(t, err, &storeErr)
		assert.Equal(t, "apply batch", storeErr.Op)
		require.NotNil(t, rep)
		assert.False(t, rep.ChangeSync.StateSaved)
		require.NotNil(t, storetest.User(store, "dave"))
		// A new job (a new Authenticator, the same store) resumes: the
		// changes since the last saved cookie are read again.
		store.fail = false
		b := syncAuth(t, slapdSyncVars(srv, slapdtest.ServiceDN, slapdtest.ServicePassword, nil), store)
		rep = syncChanges(t, b, ldapauth.SyncOptions{CreateUsers: true})
		assert.Equal(t, "incremental", rep.ChangeSync.Mode)
		assert.Equal(t, []string{"dave"}, rep.UsersRemoved)
		assert.Nil(t, storetest.User(store, "dave"))
		require.NotNil(t, storetest.User(store, "frank"))
		assert.Contains(t, members(t, store.MemStore, "readers"), "frank")
	})
}

// A refresh the sync account's size limit cuts says to raise the limit:
// the refresh is one search, so the paging advice of the full sync's read
// (LDAP_SYNC_PAGE_SIZE) would not help.
func TestSyncChangesOpenLDAPSizeLimitHint(t *testing.T) {
	srv := slapdtest.StartWith(t, slapdtest.Options{SyncProv: true, GeneratedUsers: slapdtest.DefaultSizeLimit + 10})
	a := syncAuth(t, slapdSyncVars(srv, slapdtest.LimitedServiceDN, slapdtest.LimitedServicePassword, nil), ldapauth.NewMemStore())
	_, err := a.SyncChanges(context.Background(), ldapauth.SyncOptions{CreateUsers: true})
	var abort *ldapauth.SyncAbortError
	require.ErrorAs(t, err, &abort)
	assert.Contains(t, abort.Hint, "size limit")
	assert.NotContains(t, abort.Hint, "LDAP_SYNC_PAGE_SIZE")
	assert.NotContains(t, abort.Hint, "paged search")
	assert.Equal(t, []string{"LDAP_SYNC_USER_USERNAME"}, abort.Variables)
}

// lookups is a MemStore that records what a sync reads of it: full reads
// of the users, the usernames looked up, and the entry states loaded.
type lookups struct {
	*ldapauth.MemStore
	fullReads  int
	groupReads int
	looked     []string
	entryReads [][]string // nil: every entry
}

func (s *lookups) Users(ctx context.Context) iter.Seq2[ldapauth.StoredUser, error] {
	s.fullReads++
	return s.MemStore.Users(ctx)
}

func (s *lookups) Groups(ctx context.Context) iter.Seq2[ldapauth.GroupMembers, error] {
	s.groupReads++
	return s.MemStore.Groups(ctx)
}

func (s *lookups) LookupUsers(ctx context.Context, names []string) iter.Seq2[ldapauth.StoredUser, error] {
	s.looked = append(s.looked, names...)
	return s.MemStore.LookupUsers(ctx, names)
}

func (s *lookups) LoadEntries(ctx context.Context, ids []string) (map[string][]byte, error) {
	s.entryReads = append(s.entryReads, ids)
	return s.MemStore.LoadEntries(ctx, ids)
}

func (s *lookups) reset() { s.fullReads, s.groupReads, s.looked, s.entryReads = 0, 0, nil, nil }

// With a ChangeStore, an incremental run costs the change: it never reads
// the store's users whole, it looks up only the users the changed and
// deleted entries name, and it loads the state of those entries only.
func TestSyncChangesOpenLDAPCostOfTheChange(t *testing.T) {
	srv := slapdtest.StartWith(t, slapdtest.Options{SyncProv: true, SessionLog: 1000, GeneratedUsers: 300, GeneratedUserGroups: []string{"readers"}})
	store := &lookups{MemStore: ldapauth.NewMemStore()}
	a := syncAuth(t, slapdSyncVars(srv, slapdtest.ServiceDN, slapdtest.ServicePassword, nil), store)
	opts := ldapauth.SyncOptions{CreateUsers: true}
	rep := syncChanges(t, a, opts)
	require.Equal(t, "full refresh", rep.ChangeSync.Mode)
	require.Len(t, rep.UsersCreated, 307)
	entries, groupRows := entryRows(t, store.MemStore)
	assert.Len(t, entries, 307, "one state per entry, kept by the store")
	assert.Equal(t, 2, groupRows, "and one per group with its members")

	store.reset()
	admin := srv.Admin(t)
	for _, uid := range []string{slapdtest.GeneratedUID(1), slapdtest.GeneratedUID(2)} {
		mod := ldap.NewModifyRequest(slapdtest.UserDN(uid), nil)
		mod.Replace("mail", []string{uid + "@changed.example"})
		require.NoError(t, admin.Modify(mod))
	}
	srv.DeleteUser(t, slapdtest.GeneratedUID(3))
	rep = syncChanges(t, a, opts)
	assert.Equal(t, "incremental", rep.ChangeSync.Mode)
	assert.Equal(t, "delete", rep.ChangeSync.Phase)
	assert.Equal(t, []string{slapdtest.GeneratedUID(1), slapdtest.GeneratedUID(2)}, rep.UsersUpdated)
	assert.Equal(t, []string{slapdtest.GeneratedUID(3)}, rep.UsersRemoved)
	assert.Equal(t, 306, rep.DirectoryUsers, "the unchanged entries count as read")
	assert.Equal(t, 307, rep.StoreUsers, "the guard weighs removals against the whole store")

	assert.Zero(t, store.fullReads, "the store's users are not read whole")
	assert.Zero(t, store.groupReads, "nor the groups' members: only those of the users looked up")
	readers := members(t, store.MemStore, "readers")
	assert.Contains(t, readers, slapdtest.GeneratedUID(1), "memberships kept")
	assert.NotContains(t, readers, slapdtest.GeneratedUID(3), "gone with the user")
	assert.Equal(t, 304, rep.RemovalGuard.Memberships.Total, "the guard's memberships total, from the state: readers (alice, bob, 300 generated) and marvel (2)")
	assert.ElementsMatch(t, []string{slapdtest.GeneratedUID(1), slapdtest.GeneratedUID(1), slapdtest.GeneratedUID(2), slapdtest.GeneratedUID(2), slapdtest.GeneratedUID(3)},
		store.looked, "only the users the changes name (old and new names of each changed entry)")
	require.Len(t, store.entryReads, 1)
	assert.Len(t, store.entryReads[0], 3, "only the states of the entries changed or deleted")
	entries, _ = entryRows(t, store.MemStore)
	assert.Len(t, entries, 306, "the deleted entry's state is dropped")
	assert.Equal(t, slapdtest.GeneratedUID(1)+"@changed.example", storetest.User(store, slapdtest.GeneratedUID(1)).Fields["email"])
	assert.Nil(t, storetest.User(store, slapdtest.GeneratedUID(3)))

	store.reset()
	again := syncChanges(t, a, opts)
	assert.Zero(t, again.Changes())
	assert.Zero(t, store.fullReads)
	assert.Empty(t, store.looked, "nothing changed: nobody looked up")
}

// entryRows returns the rows a ChangeStore keeps for SyncChanges: the
// entries' (by entryUUID), and the number of groups' ("group:" IDs).
func entryRows(t *testing.T, s ldapauth.ChangeStore) (map[string][]byte, int) {
	t.Helper()
	all, err := s.LoadEntries(t.Context(), nil)
	require.NoError(t, err)
	groups := 0
	for id := range all {
		if strings.HasPrefix(id, "group:") {
			delete(all, id)
			groups++
		}
	}
	return all, groups
}

// An incremental run that the directory answers with a present phase (no
// syncprov session log) costs every entry's ID: the log says what to set.
// With a session log the deletion comes as a delete phase, and no warning.
func TestSyncChangesOpenLDAPPresentPhaseWarns(t *testing.T) {
	for _, tc := range []struct {
		sessionLog int
		phase      string
		warned     bool
	}{{0, "present", true}, {100, "delete", false}} {
		t.Run(tc.phase, func(t *testing.T) {
			srv := slapdtest.StartWith(t, slapdtest.Options{SyncProv: true, SessionLog: tc.sessionLog})
			var logs syncBuffer
			a := syncAuth(t, slapdSyncVars(srv, slapdtest.ServiceDN, slapdtest.ServicePassword, nil), ldapauth.NewMemStore(),
				func(c *ldapauth.Config) { c.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
			opts := ldapauth.SyncOptions{CreateUsers: true}
			syncChanges(t, a, opts)
			srv.DeleteUser(t, "carol")
			rep := syncChanges(t, a, opts)
			require.Equal(t, tc.phase, rep.ChangeSync.Phase)
			assert.Equal(t, []string{"carol"}, rep.UsersRemoved)
			assert.Equal(t, tc.warned, strings.Contains(logs.String(), "syncprov-sessionlog"), logs.String())
		})
	}
}
