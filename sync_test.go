package ldapauth_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/internal/faultproxy"
	"github.com/go-ldapauth/ldapauth/ldaptest"
	"github.com/go-ldapauth/ldapauth/storetest"
)

// syncVars are the variables of a Flagsmith deployment that runs the sync
// job against srv: the group syncer with readers and marvel, bound as the
// directory's service account by plain name (through the formatter). The
// search base is the whole directory, the service account included; users
// log in by search-then-bind, the bind name uid=<name>,<base> (GLAuth's
// alias, not the entry's DN) proving nothing.
func syncVars(srv *ldaptest.Server, extra map[string]string) map[string]string {
	vars := srv.Env()
	vars["LDAP_AUTH_SEARCH_BASE"] = srv.BaseDN()
	vars["LDAP_AUTH_SEARCH_THEN_BIND"] = "true"
	vars["LDAP_AUTH_CONNECTION_USERNAME"] = srv.UserDN("svc")
	vars["LDAP_AUTH_CONNECTION_PASSWORD"] = ldaptest.GeneratedPassword("svc")
	vars["LDAP_AUTH_SYNC_USER_RELATIONS"] = "flagsmith_ldap.ldap.sync_user_groups"
	vars["LDAP_DEFAULT_FLAGSMITH_ORGANISATION_ID"] = "1"
	vars["LDAP_SYNCED_GROUPS"] = srv.GroupDN("readers") + ":" + srv.GroupDN("marvel")
	vars["LDAP_SYNC_USER_USERNAME"] = "svc"
	vars["LDAP_SYNC_USER_PASSWORD"] = ldaptest.GeneratedPassword("svc")
	for k, v := range extra {
		if v == "" {
			delete(vars, k)
			continue
		}
		vars[k] = v
	}
	return vars
}

// syncAuth returns an Authenticator configured by vars that writes into
// store.
func syncAuth(t testing.TB, vars map[string]string, store ldapauth.UserStore, edit ...func(*ldapauth.Config)) *ldapauth.Authenticator {
	t.Helper()
	cfg, err := ldapauth.LoadConfig(env(vars))
	require.NoError(t, err)
	cfg.Store = store
	for _, e := range edit {
		e(cfg)
	}
	a, err := ldapauth.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { a.Close() })
	return a
}

// login logs the users in (their password is "<name>-password"), so that
// the store holds them as a Flagsmith deployment would.
func login(t *testing.T, a *ldapauth.Authenticator, names ...string) {
	t.Helper()
	for _, name := range names {
		u, err := a.Authenticate(safetyNet(t), name, name+"-password")
		require.NoError(t, err, name)
		require.Equal(t, name, u.Username)
	}
}

// editUser changes the user name of d.
func editUser(t *testing.T, d *ldaptest.Directory, name string, edit func(*ldaptest.User)) {
	t.Helper()
	for i := range d.Users {
		if d.Users[i].Name == name {
			edit(&d.Users[i])
			return
		}
	}
	t.Fatalf("no user %s", name)
}

// dropUsers removes the named users from d.
func dropUsers(d *ldaptest.Directory, names ...string) {
	d.Users = slices.DeleteFunc(d.Users, func(u ldaptest.User) bool { return slices.Contains(names, u.Name) })
}

func snapshot(t *testing.T, s ldapauth.UserStore) *storetest.Contents {
	t.Helper()
	snap, err := storetest.Read(context.Background(), s)
	require.NoError(t, err)
	return snap
}

func runSync(t *testing.T, a *ldapauth.Authenticator, opts ldapauth.SyncOptions) *ldapauth.SyncReport {
	t.Helper()
	rep, err := a.Sync(context.Background(), opts)
	require.NoError(t, err)
	require.NotNil(t, rep)
	return rep
}

// demoSync starts the demo directory, logs alice, bob, carol and jürgen in
// and returns the server, the store and an Authenticator for the sync.
func demoSync(t *testing.T, extra map[string]string) (*ldaptest.Server, *ldapauth.MemStore, *ldapauth.Authenticator) {
	return demoSyncVia(t, extra, false)
}

// snapshotOnly is a MemStore seen through the UserStore interface alone,
// as any other store: the sync reads it through Users and Groups only, and
// writes one call per change (no BatchStore).
type snapshotOnly struct{ ldapauth.UserStore }

// demoSyncVia is demoSync, the sync reading the store through
// snapshotOnly when viaSnapshot is set.
func demoSyncVia(t *testing.T, extra map[string]string, viaSnapshot bool) (*ldaptest.Server, *ldapauth.MemStore, *ldapauth.Authenticator) {
	t.Helper()
	srv := ldaptest.Start(t, ldaptest.DemoDirectory())
	store := ldapauth.NewMemStore()
	var us ldapauth.UserStore = store
	if viaSnapshot {
		us = snapshotOnly{store}
	}
	a := syncAuth(t, syncVars(srv, extra), us)
	login(t, a, "alice", "bob", "carol", "jürgen")
	return srv, store, a
}

func TestSyncSteadyStateIsNoOp(t *testing.T) {
	for _, via := range []bool{false, true} {
		t.Run(fmt.Sprintf("snapshot=%v", via), func(t *testing.T) { testSyncSteadyStateIsNoOp(t, via) })
	}
}

func testSyncSteadyStateIsNoOp(t *testing.T, viaSnapshot bool) {
	_, store, a := demoSyncVia(t, nil, viaSnapshot)
	before := snapshot(t, store)
	rep := runSync(t, a, ldapauth.SyncOptions{})
	assert.Zero(t, rep.Changes(), "logins already did everything: %s", rep)
	assert.True(t, rep.Applied)
	assert.Equal(t, 1, rep.Pages)
	assert.Equal(t, 7, rep.DirectoryUsers, "every posixAccount, svc and those who never logged in included")
	assert.Equal(t, 4, rep.StoreUsers)
	assert.Equal(t, before, snapshot(t, store))
	assert.Nil(t, storetest.User(store, "mallory"), "users who never logged in are not created by default")
}

// The directory changes between two syncs: a user removed, a user's
// fields changed, one user joins a synced group and another leaves it.
func TestSyncDirectoryChanges(t *testing.T) {
	for _, via := range []bool{false, true} {
		t.Run(fmt.Sprintf("snapshot=%v", via), func(t *testing.T) { testSyncDirectoryChanges(t, via) })
	}
}

func testSyncDirectoryChanges(t *testing.T, viaSnapshot bool) {
	srv, store, a := demoSyncVia(t, nil, viaSnapshot)
	readers, marvel := srv.GroupDN("readers"), srv.GroupDN("marvel")

	d := ldaptest.DemoDirectory()
	dropUsers(&d, "jürgen")
	editUser(t, &d, "alice", func(u *ldaptest.User) { u.SN = "Hargreaves"; u.Groups = append(u.Groups, "marvel") })
	editUser(t, &d, "bob", func(u *ldaptest.User) { u.Groups = []string{"readers"} })
	require.NoError(t, srv.SetDirectory(d))

	rep := runSync(t, a, ldapauth.SyncOptions{})
	assert.Equal(t, []string{"jürgen"}, rep.UsersRemoved)
	assert.Equal(t, []string{"alice"}, rep.UsersUpdated)
	assert.Equal(t, []ldapauth.Membership{{GroupDN: marvel, Username: "alice"}}, rep.MembershipsAdded)
	assert.Equal(t, []ldapauth.Membership{{GroupDN: marvel, Username: "bob"}}, rep.MembershipsRemoved)
	assert.Empty(t, rep.GroupsRemoved)
	assert.Empty(t, rep.UsersCreated)
	assert.Equal(t, 4, rep.Changes())

	assert.Nil(t, storetest.User(store, "jürgen"))
	assert.Equal(t, "Hargreaves", storetest.User(store, "alice").Fields["last_name"], "fields refreshed as a login would")
	members, _ := storetest.Members(store, marvel)
	assert.Equal(t, []string{"alice", "carol"}, members)
	members, _ = storetest.Members(store, readers)
	assert.Equal(t, []string{"alice", "bob"}, members)

	again := runSync(t, a, ldapauth.SyncOptions{})
	assert.Zero(t, again.Changes(), "a second run changes nothing: %s", again)
}

func TestSyncUserLeftLoginGroup(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.DemoDirectory())
	store := ldapauth.NewMemStore()
	a := syncAuth(t, syncVars(srv, map[string]string{
		"LDAP_AUTH_FORMAT_SEARCH_FILTERS": "flagsmith_ldap.ldap.login_group_search_filter",
		"LDAP_LOGIN_GROUP":                srv.GroupDN("ldapusers"),
	}), store)
	login(t, a, "alice", "carol", "jürgen")

	rep := runSync(t, a, ldapauth.SyncOptions{})
	assert.Zero(t, rep.Changes(), "%s", rep)
	assert.Equal(t, 5, rep.DirectoryUsers, "the login group's members only: alice, carol, jürgen, dave(ops, mallory")

	d := ldaptest.DemoDirectory()
	editUser(t, &d, "carol", func(u *ldaptest.User) { u.Groups = []string{"marvel"} })
	require.NoError(t, srv.SetDirectory(d))
	rep = runSync(t, a, ldapauth.SyncOptions{})
	assert.Equal(t, []string{"carol"}, rep.UsersRemoved, "outside the login group, the login search no longer finds her")
	assert.Nil(t, storetest.User(store, "carol"))
	assert.NotNil(t, storetest.User(store, "alice"))
}

// GLAuth answers a base search on a missing group with success and no
// entry, which is not a definitive "gone": the group stays, reported, while
// memberships still follow memberOf.
func TestSyncGroupGoneFromGLAuthIsLeftAlone(t *testing.T) {
	srv, store, a := demoSync(t, nil)
	marvel := srv.GroupDN("marvel")
	d := ldaptest.DemoDirectory()
	d.Groups = slices.DeleteFunc(d.Groups, func(g ldaptest.Group) bool { return g.Name == "marvel" })
	for i := range d.Users {
		d.Users[i].Groups = slices.DeleteFunc(d.Users[i].Groups, func(g string) bool { return g == "marvel" })
	}
	require.NoError(t, srv.SetDirectory(d))

	rep := runSync(t, a, ldapauth.SyncOptions{})
	assert.Empty(t, rep.GroupsRemoved)
	require.Len(t, rep.GroupsLeftAlone, 1)
	assert.Equal(t, marvel, rep.GroupsLeftAlone[0].DN)
	assert.Contains(t, rep.GroupsLeftAlone[0].Reason, "not confirmed gone")
	_, ok := storetest.GroupOf(store, marvel)
	assert.True(t, ok, "the group is kept")
	assert.Equal(t, []ldapauth.Membership{{GroupDN: marvel, Username: "bob"}, {GroupDN: marvel, Username: "carol"}}, rep.MembershipsRemoved,
		"memberOf no longer lists it")
}

func TestSyncGroupDroppedFromSyncedGroupsIsLeftAlone(t *testing.T) {
	srv, store, _ := demoSync(t, nil)
	marvel := srv.GroupDN("marvel")
	a := syncAuth(t, syncVars(srv, map[string]string{"LDAP_SYNCED_GROUPS": srv.GroupDN("readers")}), store)
	d := ldaptest.DemoDirectory()
	editUser(t, &d, "bob", func(u *ldaptest.User) { u.Groups = []string{"readers"} })
	require.NoError(t, srv.SetDirectory(d))

	rep := runSync(t, a, ldapauth.SyncOptions{})
	assert.Equal(t, []ldapauth.Notice{{DN: marvel, Reason: "not in LDAP_SYNCED_GROUPS"}}, rep.GroupsLeftAlone)
	assert.Zero(t, rep.Changes(), "%s", rep)
	members, ok := storetest.Members(store, marvel)
	require.True(t, ok)
	assert.Equal(t, []string{"bob", "carol"}, members, "its members are not touched either")
}

func TestSyncCreateUsers(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.DemoDirectory())
	store := ldapauth.NewMemStore()
	a := syncAuth(t, syncVars(srv, nil), store)
	rep := runSync(t, a, ldapauth.SyncOptions{CreateUsers: true})
	assert.Equal(t, []string{"alice", "bob", "carol", "dave(ops", "jürgen", "mallory", "svc"}, rep.UsersCreated)
	assert.Equal(t, rep.UsersCreated, rep.OrganisationJoins)
	assert.Equal(t, []ldapauth.Group{{DN: srv.GroupDN("marvel"), Name: "marvel"}, {DN: srv.GroupDN("readers"), Name: "readers"}}, rep.GroupsCreated)
	assert.Len(t, rep.MembershipsAdded, 4)
	assert.Equal(t, []string{"1"}, storetest.Organisations(store, "mallory"))
	members, _ := storetest.Members(store, srv.GroupDN("readers"))
	assert.Equal(t, []string{"alice", "bob"}, members)
	assert.Equal(t, "Liddell", storetest.User(store, "alice").Fields["last_name"])

	again := runSync(t, a, ldapauth.SyncOptions{CreateUsers: true})
	assert.Zero(t, again.Changes(), "%s", again)
}

// A server that ignores the paged results control (GLAuth answers with
// every entry in the first page and an empty cookie) is read in full with
// LDAP_SYNC_PAGE_SIZE below the user count. Reading many pages is tested
// against OpenLDAP, which pages: integration/openldap TestSyncPaging.
func TestSyncServerIgnoringPageSize(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.Generate(50, 5))
	store := ldapauth.NewMemStore()
	a := syncAuth(t, syncVars(srv, map[string]string{
		"LDAP_SYNCED_GROUPS":  srv.GroupDN("group0001") + ":" + srv.GroupDN("group0002"),
		"LDAP_SYNC_PAGE_SIZE": "7",
	}), store)
	rep := runSync(t, a, ldapauth.SyncOptions{CreateUsers: true})
	assert.Equal(t, 1, rep.Pages, "the server sent every entry at once, past the page size")
	assert.Equal(t, 51, rep.DirectoryUsers)
	assert.Len(t, rep.UsersCreated, 51)
	assert.Len(t, snapshot(t, store).Users, 51)
}

// The guard refuses a sync that would remove more than the share, writing
// nothing and returning the plan; Force applies it.
func TestSyncRemovalGuard(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.Generate(40, 4))
	store := ldapauth.NewMemStore()
	a := syncAuth(t, syncVars(srv, map[string]string{"LDAP_SYNCED_GROUPS": srv.GroupDN("group0001")}), store)
	runSync(t, a, ldapauth.SyncOptions{CreateUsers: true})
	before := snapshot(t, store)
	require.Len(t, before.Users, 41)

	d := ldaptest.Generate(40, 4)
	var gone []string
	for i := range 10 {
		gone = append(gone, d.Users[i].Name)
	}
	dropUsers(&d, gone...)
	require.NoError(t, srv.SetDirectory(d))

	rep, err := a.Sync(context.Background(), ldapauth.SyncOptions{})
	require.ErrorIs(t, err, ldapauth.ErrRemovalGuard)
	assert.NotErrorIs(t, err, ldapauth.ErrSyncAborted)
	var gerr *ldapauth.SyncAbortError
	require.ErrorAs(t, err, &gerr)
	assert.Equal(t, "removal guard", gerr.Phase)
	require.NotNil(t, rep, "the plan comes with the refusal")
	assert.Equal(t, ldapauth.RemovalGuard{
		LimitPercent: 10, Allowance: 5,
		Users:  ldapauth.RemovalCount{Remove: 10, Total: 41, OverLimit: true},
		Groups: ldapauth.RemovalCount{Total: 1}, Memberships: ldapauth.RemovalCount{Total: 30},
	}, rep.RemovalGuard)
	assert.Contains(t, err.Error(), "10 of 41 directory-managed users (24.4%), above LDAP_SYNC_MAX_REMOVAL_PERCENT=10 and the allowance of 5 (check the plan, then force)")
	assert.Equal(t, gone, rep.UsersRemoved)
	assert.False(t, rep.Applied)
	assert.Equal(t, before, snapshot(t, store), "nothing written")

	t.Run("a higher share lets it through", func(t *testing.T) {
		lenient := syncAuth(t, syncVars(srv, map[string]string{"LDAP_SYNCED_GROUPS": srv.GroupDN("group0001"), "LDAP_SYNC_MAX_REMOVAL_PERCENT": "30"}), store)
		rep, err := lenient.Sync(context.Background(), ldapauth.SyncOptions{DryRun: true})
		require.NoError(t, err)
		assert.Len(t, rep.UsersRemoved, 10)
	})

	rep = runSync(t, a, ldapauth.SyncOptions{Force: true})
	assert.True(t, rep.Forced)
	assert.Equal(t, gone, rep.UsersRemoved)
	assert.Len(t, snapshot(t, store).Users, 31)
}

// A directory that returns no user at all is refused however few users
// the store holds: a wrong filter or an emptied login group looks like this.
func TestSyncRemovalGuardEmptyDirectory(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.DemoDirectory())
	store := ldapauth.NewMemStore()
	a := syncAuth(t, syncVars(srv, map[string]string{
		"LDAP_AUTH_FORMAT_SEARCH_FILTERS": "flagsmith_ldap.ldap.login_group_search_filter",
		"LDAP_LOGIN_GROUP":                srv.GroupDN("ldapusers"),
	}), store)
	login(t, a, "alice", "carol")
	d := ldaptest.DemoDirectory()
	for i := range d.Users {
		d.Users[i].Groups = slices.DeleteFunc(d.Users[i].Groups, func(g string) bool { return g == "ldapusers" })
	}
	require.NoError(t, srv.SetDirectory(d))

	rep, err := a.Sync(context.Background(), ldapauth.SyncOptions{})
	var gerr *ldapauth.SyncAbortError
	require.ErrorAs(t, err, &gerr)
	assert.Equal(t, "removal guard", gerr.Phase)
	assert.Contains(t, err.Error(), "the directory returned no user, the sync would remove all 2 directory-managed users (check the search base and filters, then force)")
	assert.Equal(t, 2, rep.RemovalGuard.Users.Remove)
	assert.Equal(t, 0, rep.DirectoryUsers)
	assert.Len(t, snapshot(t, store).Users, 2)

	rep = runSync(t, a, ldapauth.SyncOptions{Force: true})
	assert.Equal(t, []string{"alice", "carol"}, rep.UsersRemoved)
}

func TestSyncDryRunWritesNothing(t *testing.T) {
	srv, store, a := demoSync(t, nil)
	d := ldaptest.DemoDirectory()
	dropUsers(&d, "carol")
	editUser(t, &d, "alice", func(u *ldaptest.User) { u.Mail = "alice@example.org"; u.Groups = append(u.Groups, "marvel") })
	require.NoError(t, srv.SetDirectory(d))
	before := snapshot(t, store)

	plan := runSync(t, a, ldapauth.SyncOptions{DryRun: true, CreateUsers: true})
	assert.True(t, plan.DryRun)
	assert.False(t, plan.Applied)
	assert.Equal(t, before, snapshot(t, store), "nothing written")
	assert.Equal(t, []string{"carol"}, plan.UsersRemoved)
	assert.Equal(t, []string{"alice"}, plan.UsersUpdated)
	assert.Equal(t, []string{"dave(ops", "mallory", "svc"}, plan.UsersCreated)
	assert.Contains(t, plan.String(), "dry run, nothing written")

	done := runSync(t, a, ldapauth.SyncOptions{CreateUsers: true})
	plan.DryRun, plan.Applied = false, true
	assert.Equal(t, plan, done, "the dry run's plan is what the real run does")
}

// A connection cut in the middle of the read removes nothing.
func TestSyncConnectionCutMidRead(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.Generate(300, 10))
	proxy := faultproxy.Start(t, strings.TrimPrefix(srv.URL(), "ldap://"))
	store := ldapauth.NewMemStore()
	vars := syncVars(srv, map[string]string{"LDAP_AUTH_URL": proxy.URL(), "LDAP_SYNCED_GROUPS": srv.GroupDN("group0001"), "LDAP_SYNC_PAGE_SIZE": "50"})
	a := syncAuth(t, vars, store)
	runSync(t, a, ldapauth.SyncOptions{CreateUsers: true})
	before := snapshot(t, store)

	d := ldaptest.Generate(300, 10)
	dropUsers(&d, d.Users[0].Name, d.Users[1].Name)
	require.NoError(t, srv.SetDirectory(d))
	proxy.CutAfter(20_000) // the bind answer and part of the entries
	rep, err := a.Sync(context.Background(), ldapauth.SyncOptions{Force: true})
	require.ErrorIs(t, err, ldapauth.ErrSyncAborted)
	require.ErrorIs(t, err, ldapauth.ErrUnavailable)
	var aerr *ldapauth.SyncAbortError
	require.ErrorAs(t, err, &aerr)
	assert.Equal(t, "read users", aerr.Phase)
	assert.Nil(t, rep)
	assert.Equal(t, before, snapshot(t, store), "nothing removed, even forced")

	proxy.CutAfter(0)
	rep = runSync(t, a, ldapauth.SyncOptions{})
	assert.Len(t, rep.UsersRemoved, 2, "a complete read does remove them")
}

// Cancelling ctx while the read is in flight removes nothing.
func TestSyncCancelledMidRead(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.DemoDirectory())
	proxy := faultproxy.Start(t, strings.TrimPrefix(srv.URL(), "ldap://"))
	store := ldapauth.NewMemStore()
	a := syncAuth(t, syncVars(srv, map[string]string{"LDAP_AUTH_URL": proxy.URL()}), store, func(c *ldapauth.Config) { c.ReceiveTimeout = time.Hour })
	login(t, a, "alice", "bob", "carol")
	d := ldaptest.DemoDirectory()
	dropUsers(&d, "alice", "bob", "carol")
	require.NoError(t, srv.SetDirectory(d))
	before := snapshot(t, store)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var once sync.Once
	rep, err := a.Sync(ctx, ldapauth.SyncOptions{Force: true, Progress: func(p ldapauth.SyncProgress) {
		if p.Phase == "read users" && p.Pages == 0 {
			// Bound; the search is about to go out: hold it in the proxy
			// and cancel while the client waits for the answer.
			once.Do(func() {
				proxy.SetDelay(time.Hour)
				time.AfterFunc(50*time.Millisecond, cancel)
			})
		}
	}})
	require.ErrorIs(t, err, ldapauth.ErrSyncAborted)
	require.ErrorIs(t, err, context.Canceled)
	assert.Nil(t, rep)
	assert.Equal(t, before, snapshot(t, store))
}

func TestSyncMissingVariables(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.DemoDirectory())
	vars := srv.Env() // login only: none of the sync's variables
	a := syncAuth(t, vars, ldapauth.NewMemStore())
	_, err := a.Sync(context.Background(), ldapauth.SyncOptions{})
	require.ErrorIs(t, err, ldapauth.ErrConfig)
	got := configErrors(t, err)
	for _, v := range []string{"LDAP_SYNC_USER_USERNAME", "LDAP_SYNC_USER_PASSWORD", "LDAP_SYNCED_GROUPS",
		"LDAP_AUTH_SYNC_USER_RELATIONS", "LDAP_DEFAULT_FLAGSMITH_ORGANISATION_ID"} {
		assert.Contains(t, got, v, "the error names %s", v)
	}
	assert.Len(t, got, 5)

	a = syncAuth(t, syncVars(srv, map[string]string{"LDAP_SYNCED_GROUPS": ""}), ldapauth.NewMemStore())
	_, err = a.Sync(context.Background(), ldapauth.SyncOptions{})
	got = configErrors(t, err)
	assert.Equal(t, []string{"LDAP_SYNCED_GROUPS"}, slices.Collect(maps.Keys(got)))
}

func TestSyncAccount(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.DemoDirectory())
	t.Run("a DN is used verbatim", func(t *testing.T) {
		a := syncAuth(t, syncVars(srv, map[string]string{"LDAP_SYNC_USER_USERNAME": srv.UserDN("svc")}), ldapauth.NewMemStore())
		runSync(t, a, ldapauth.SyncOptions{})
	})
	t.Run("a refused bind is the service account's fault", func(t *testing.T) {
		const secret = "not-svc-password"
		a := syncAuth(t, syncVars(srv, map[string]string{"LDAP_SYNC_USER_PASSWORD": secret}), ldapauth.NewMemStore())
		_, err := a.Sync(context.Background(), ldapauth.SyncOptions{})
		require.ErrorIs(t, err, ldapauth.ErrServiceAccount)
		require.ErrorIs(t, err, ldapauth.ErrSyncAborted)
		assert.NotErrorIs(t, err, ldapauth.ErrInvalidCredentials)
		assert.NotContains(t, err.Error(), secret)
		assert.Equal(t, 1, strings.Count(err.Error(), "ldapauth:"), "prefixed once: %v", err)
	})
	t.Run("an unreachable directory", func(t *testing.T) {
		a := syncAuth(t, syncVars(srv, map[string]string{"LDAP_AUTH_URL": closedURL(t)}), ldapauth.NewMemStore())
		_, err := a.Sync(context.Background(), ldapauth.SyncOptions{})
		require.ErrorIs(t, err, ldapauth.ErrUnavailable)
		require.ErrorIs(t, err, ldapauth.ErrSyncAborted)
	})
}

func TestSyncReportAndProgress(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.DemoDirectory())
	var logs bytes.Buffer
	store := ldapauth.NewMemStore()
	a := syncAuth(t, syncVars(srv, nil), store, func(c *ldapauth.Config) {
		c.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
	})
	login(t, a, "alice", "bob")
	d := ldaptest.DemoDirectory()
	dropUsers(&d, "bob")
	require.NoError(t, srv.SetDirectory(d))

	var phases []string
	var last ldapauth.SyncProgress
	rep := runSync(t, a, ldapauth.SyncOptions{Progress: func(p ldapauth.SyncProgress) {
		if len(phases) == 0 || phases[len(phases)-1] != p.Phase {
			phases = append(phases, p.Phase)
		}
		last = p
	}})
	assert.Equal(t, []string{"read users", "apply", "done"}, phases)
	assert.Equal(t, ldapauth.SyncProgress{Phase: "done", Pages: 1, Users: 6, Done: 1, Total: 1}, last)
	assert.Contains(t, logs.String(), `"msg":"ldapauth: sync read a page of users","pages":1,"users":6`)
	assert.NotContains(t, logs.String(), "svc-password")

	text := rep.String()
	assert.Contains(t, text, "ldapauth sync (applied): 6 directory users in 1 pages, 2 directory-managed users in the store, 1 changes\n")
	assert.Contains(t, text, "users removed (1):\n  bob\n")

	raw, err := json.Marshal(rep)
	require.NoError(t, err)
	var back ldapauth.SyncReport
	require.NoError(t, json.Unmarshal(raw, &back))
	again, err := json.Marshal(back)
	require.NoError(t, err)
	assert.JSONEq(t, string(raw), string(again), "the JSON carries the whole report")
	assert.Equal(t, rep.UsersRemoved, back.UsersRemoved)
	assert.Equal(t, rep.Changes(), back.Changes())
	assert.Contains(t, string(raw), `"users_removed":["bob"]`)
	assert.Contains(t, string(raw), `"users_created":[]`, "empty lists are [], never null")
	assert.Contains(t, string(raw), `"counts":{"users_removed":1,`)
}

// The removal guard weighs memberships against the memberships the store
// holds in synced groups, as users against users: users who all leave a
// synced group at once (a group emptied by mistake) are refused, the plan
// reported in text and JSON, and forced it goes.
func TestSyncRemovalGuardMemberships(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.Generate(40, 4))
	store := ldapauth.NewMemStore()
	group := srv.GroupDN("group0001")
	a := syncAuth(t, syncVars(srv, map[string]string{"LDAP_SYNCED_GROUPS": group}), store)
	runSync(t, a, ldapauth.SyncOptions{CreateUsers: true})
	before := snapshot(t, store)
	held, _ := storetest.Members(store, group)

	d := ldaptest.Generate(40, 4)
	var left []string
	for i := range d.Users {
		if n := len(d.Users[i].Groups); n > 0 {
			d.Users[i].Groups = slices.DeleteFunc(d.Users[i].Groups, func(g string) bool { return g == "group0001" })
			if len(d.Users[i].Groups) < n {
				left = append(left, d.Users[i].Name)
			}
		}
	}
	require.Greater(t, len(left), 5, "more than the allowance leave")
	require.NoError(t, srv.SetDirectory(d))

	rep, err := a.Sync(context.Background(), ldapauth.SyncOptions{})
	require.ErrorIs(t, err, ldapauth.ErrRemovalGuard)
	var gerr *ldapauth.SyncAbortError
	require.ErrorAs(t, err, &gerr)
	assert.Equal(t, "removal guard", gerr.Phase)
	assert.Equal(t, ldapauth.RemovalCount{Remove: len(left), Total: len(held), OverLimit: true}, rep.RemovalGuard.Memberships)
	assert.False(t, rep.RemovalGuard.Users.OverLimit)
	assert.Contains(t, err.Error(), fmt.Sprintf("%d of %d memberships of synced groups", len(left), len(held)))
	assert.Len(t, rep.MembershipsRemoved, len(left), "the plan comes with the refusal")
	assert.Equal(t, before, snapshot(t, store), "nothing written")

	assert.Contains(t, rep.String(), fmt.Sprintf("removal guard (10%% of each, or 5): users 0 of 41, synced groups 0 of 1, memberships %d of %d (over the limit)\n", len(left), len(held)))
	raw, err := json.Marshal(rep)
	require.NoError(t, err)
	assert.Contains(t, string(raw), fmt.Sprintf(`"removal_guard":{"limit_percent":10,"allowance":5,"users":{"remove":0,"total":41,"over_limit":false},"groups":{"remove":0,"total":1,"over_limit":false},"memberships":{"remove":%d,"total":%d,"over_limit":true},"held":[]}`, len(left), len(held)))

	rep = runSync(t, a, ldapauth.SyncOptions{Force: true})
	assert.Len(t, rep.MembershipsRemoved, len(left))
	now, _ := storetest.Members(store, group)
	assert.Len(t, now, len(held)-len(left))
}

// A watch that would write nothing is refused before any I/O, as a
// configuration error naming the option.
func TestWatchChangesRefusesDryRun(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.DemoDirectory())
	a := syncAuth(t, syncVars(srv, nil), ldapauth.NewMemStore())
	err := a.WatchChanges(context.Background(), ldapauth.WatchOptions{SyncOptions: ldapauth.SyncOptions{DryRun: true}})
	require.ErrorIs(t, err, ldapauth.ErrConfig)
	var cerr *ldapauth.ConfigError
	require.ErrorAs(t, err, &cerr)
	assert.Equal(t, []string{"WatchOptions.DryRun"}, cerr.Variables)
	assert.Contains(t, err.Error(), "a watch cannot be a dry run")
}

// streamsTwice is a store whose Users yields every user twice, against
// the UserStore contract.
type streamsTwice struct{ ldapauth.UserStore }

func (s streamsTwice) Users(ctx context.Context) iter.Seq2[ldapauth.StoredUser, error] {
	return func(yield func(ldapauth.StoredUser, error) bool) {
		for u, err := range s.UserStore.Users(ctx) {
			if !yield(u, err) || err == nil && !yield(u, nil) {
				return
			}
		}
	}
}

// A store that streams a user twice gets a clear error and loses
// nothing: the sync cannot tell which row is the user.
func TestSyncStoreStreamingAUserTwice(t *testing.T) {
	srv, store, _ := demoSync(t, nil)
	a := syncAuth(t, syncVars(srv, nil), streamsTwice{store})
	before := snapshot(t, store)
	_, err := a.Sync(context.Background(), ldapauth.SyncOptions{})
	require.ErrorIs(t, err, ldapauth.ErrSyncAborted)
	assert.ErrorContains(t, err, "streamed a username twice")
	var se *ldapauth.StoreError
	assert.ErrorAs(t, err, &se)
	assert.Equal(t, before, snapshot(t, store))
}

// A stored user whose username the store spells otherwise than the
// directory (ALICE for alice) is updated to the directory's spelling, as
// a login would: the spelling is part of what the sync compares.
func TestSyncUpdatesUsernameSpelling(t *testing.T) {
	_, store, a := demoSync(t, nil)
	alice := storetest.User(store, "alice")
	require.NotNil(t, alice)
	shouting := *alice
	shouting.Username = "ALICE"
	require.NoError(t, store.SaveUser(context.Background(), &shouting))
	require.Equal(t, "ALICE", storetest.User(store, "alice").Username)

	rep := runSync(t, a, ldapauth.SyncOptions{})
	assert.Equal(t, []string{"alice"}, rep.UsersUpdated)
	assert.Equal(t, "alice", storetest.User(store, "alice").Username)
	assert.Zero(t, runSync(t, a, ldapauth.SyncOptions{}).Changes())
}

// blockingStore is a store whose users stream until the sync gives up on
// them.
type blockingStore struct{ ldapauth.UserStore }

func (s blockingStore) Users(ctx context.Context) iter.Seq2[ldapauth.StoredUser, error] {
	return func(yield func(ldapauth.StoredUser, error) bool) {
		<-ctx.Done()
		yield(ldapauth.StoredUser{}, ctx.Err())
	}
}

// The store is read while the directory is reached: a directory that
// cannot be reached ends the run with its own error while the store is
// still streaming, and the store's read is given up.
func TestSyncReadsStoreWhileReachingDirectory(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.DemoDirectory())
	vars := syncVars(srv, map[string]string{"LDAP_AUTH_URL": "ldap://127.0.0.1:1"})
	a := syncAuth(t, vars, blockingStore{ldapauth.NewMemStore()})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := a.Sync(ctx, ldapauth.SyncOptions{})
	require.ErrorIs(t, err, ldapauth.ErrUnavailable)
	var se *ldapauth.StoreError
	assert.False(t, errors.As(err, &se), "the directory's error, not the store's: %v", err)
	assert.NoError(t, ctx.Err(), "the run ended on the directory's error, not the test's deadline")
}
