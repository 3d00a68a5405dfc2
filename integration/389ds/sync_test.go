package ds389_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/internal/dstest"
	"github.com/go-ldapauth/ldapauth/storetest"
)

// The sync job (Authenticator.Sync) on the shared 389-DS. Each test that
// changes the directory works on users and groups of its own, and a login
// group of its own keeps the sync's view to them.

// syncFixture is a test's own corner of the directory: users, a login group
// holding them, and two synced groups, a groupOfNames and a
// groupOfUniqueNames.
type syncFixture struct {
	srv                        *dstest.Server
	users                      []string // uids
	dns                        map[string]string
	login, names, unique       string // group DNs
	loginCN, namesCN, uniqueCN string
}

func newSyncFixture(t *testing.T, srv *dstest.Server, n int) *syncFixture {
	t.Helper()
	f := &syncFixture{srv: srv, dns: map[string]string{},
		loginCN: dstest.TempName("login"), namesCN: dstest.TempName("names"), uniqueCN: dstest.TempName("unique")}
	for range n {
		uid, dn := tempUser(t, srv)
		f.users = append(f.users, uid)
		f.dns[uid] = dn
	}
	var all []string
	for _, uid := range f.users {
		all = append(all, f.dns[uid])
	}
	f.login = srv.AddGroup(t, f.loginCN, false, all...)
	f.names = srv.AddGroup(t, f.namesCN, false, f.dns[f.users[0]])
	f.unique = srv.AddGroup(t, f.uniqueCN, true, f.dns[f.users[0]], f.dns[f.users[1]])
	return f
}

// env is the sync job's environment over the fixture, bound as svc.
func (f *syncFixture) env(extra ...string) map[string]string {
	return flagsmithEnv(f.srv.URL, append([]string{
		ldapauth.EnvSearchFilters, "flagsmith_ldap.ldap.login_group_search_filter",
		ldapauth.EnvLoginGroup, f.login,
		ldapauth.EnvSyncRelations, "flagsmith_ldap.ldap.sync_user_groups",
		ldapauth.EnvOrganisationID, "1",
		ldapauth.EnvSyncedGroups, f.names + ":" + f.unique,
		ldapauth.EnvSyncUsername, dstest.ServiceDN,
		ldapauth.EnvSyncPassword, dstest.ServicePassword,
	}, extra...)...)
}

func loginAll(t *testing.T, a *ldapauth.Authenticator, uids ...string) {
	t.Helper()
	for _, uid := range uids {
		_, err := login(a, uid, dstest.Password(uid))
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

func snapshotUsers(t *testing.T, s *ldapauth.MemStore) []string {
	t.Helper()
	snap, err := storetest.Read(context.Background(), s)
	require.NoError(t, err)
	return snap.Users
}

func members(s *ldapauth.MemStore, dn string) []string {
	m, _ := storetest.Members(s, dn)
	return m
}

// The seed's ldapusers (five seed users and the generated ones) read in
// pages; the second run changes nothing.
func TestSyncPaging(t *testing.T) {
	srv := dstest.Shared(t)
	const users = generatedUsers + 5
	store := ldapauth.NewMemStore()
	env := flagsmithEnv(srv.URL,
		ldapauth.EnvSearchFilters, "login_group", ldapauth.EnvLoginGroup, dstest.GroupDN("ldapusers"),
		ldapauth.EnvSyncRelations, "sync_user_groups", ldapauth.EnvOrganisationID, "1",
		ldapauth.EnvSyncedGroups, dstest.GroupDN("readers")+":"+dstest.GroupDN("staff"),
		ldapauth.EnvSyncUsername, dstest.ServiceDN, ldapauth.EnvSyncPassword, dstest.ServicePassword,
		ldapauth.EnvSyncPageSize, "250")
	a := storeAuth(t, env, store)
	for run := range 2 {
		var perPage []int
		rep := runSync(t, a, ldapauth.SyncOptions{CreateUsers: true, Progress: func(p ldapauth.SyncProgress) {
			if p.Phase == ldapauth.SyncReadUsers && p.Pages > 0 {
				perPage = append(perPage, p.Users)
			}
		}})
		assert.Equal(t, 3, rep.Pages)
		require.Len(t, perPage, 3)
		assert.Equal(t, 250, perPage[0], "entries arrive page by page")
		assert.Equal(t, users, rep.DirectoryUsers)
		assert.Len(t, snapshotUsers(t, store), users)
		assert.Equal(t, []string{"alice"}, members(store, dstest.GroupDN("readers")), "bob is outside the login group")
		assert.Equal(t, []string{"alice"}, members(store, dstest.GroupDN("staff")), "groupOfUniqueNames")
		if run == 0 {
			assert.Len(t, rep.UsersCreated, users)
		} else {
			assert.Zero(t, rep.Counts.Changes(), "a second run changes nothing: %s", rep)
		}
	}
}

func TestSyncDirectoryChanges(t *testing.T) {
	srv := dstest.Shared(t)
	f := newSyncFixture(t, srv, 3)
	u1, u2, u3 := f.users[0], f.users[1], f.users[2]
	store := ldapauth.NewMemStore()
	a := storeAuth(t, f.env(), store)
	loginAll(t, a, u1, u2, u3)
	assert.Equal(t, []string{u1}, members(store, f.names))
	assert.ElementsMatch(t, []string{u1, u2}, members(store, f.unique), "uniqueMember counts on login")
	rep := runSync(t, a, ldapauth.SyncOptions{})
	require.Zero(t, rep.Counts.Changes(), "%s", rep)

	srv.DeleteEntry(t, f.dns[u3])
	srv.AddMember(t, f.namesCN, f.dns[u2])
	srv.RemoveMember(t, f.uniqueCN, f.dns[u1])
	rep = runSync(t, a, ldapauth.SyncOptions{Force: true})
	assert.Equal(t, []string{u3}, rep.UsersRemoved)
	assert.Equal(t, []ldapauth.Membership{{GroupDN: f.names, Username: u2}}, rep.MembershipsAdded)
	assert.Equal(t, []ldapauth.Membership{{GroupDN: f.unique, Username: u1}}, rep.MembershipsRemoved)
	assert.ElementsMatch(t, []string{u1, u2}, members(store, f.names))
	assert.Equal(t, []string{u2}, members(store, f.unique))

	// A deleted synced group (noSuchObject) goes with its memberships.
	srv.DeleteEntry(t, f.unique)
	rep = runSync(t, a, ldapauth.SyncOptions{})
	assert.Equal(t, []ldapauth.Group{{DN: f.unique, Name: f.uniqueCN}}, rep.GroupsRemoved)
	_, ok := storetest.GroupOf(store, f.unique)
	assert.False(t, ok)
	again := runSync(t, a, ldapauth.SyncOptions{})
	assert.Zero(t, again.Counts.Changes(), "a second run changes nothing: %s", again)
}

func TestSyncLeftLoginGroup(t *testing.T) {
	srv := dstest.Shared(t)
	f := newSyncFixture(t, srv, 3)
	store := ldapauth.NewMemStore()
	a := storeAuth(t, f.env(), store)
	loginAll(t, a, f.users...)
	srv.RemoveMember(t, f.loginCN, f.dns[f.users[1]])
	rep := runSync(t, a, ldapauth.SyncOptions{Force: true})
	assert.Equal(t, []string{f.users[1]}, rep.UsersRemoved)
	assert.Equal(t, []string{f.users[0]}, members(store, f.unique), "the membership went with the user")
}

// A login group and a synced group reached through nesting (a
// groupOfUniqueNames in a groupOfNames): the memberOf plugin lists them, so
// the sync finds the nested members (CreateUsers would create them) and
// keeps them, with or without walk, and drops them once the nesting is
// gone.
func TestSyncNestedGroups(t *testing.T) {
	srv := dstest.Shared(t)
	for _, nested := range []string{"walk", "off"} {
		t.Run(nested, func(t *testing.T) {
			uid, dn := tempUser(t, srv)
			other, otherDN := tempUser(t, srv)
			childCN := dstest.TempName("child")
			child := srv.AddGroup(t, childCN, true, dn, otherDN)
			parent := srv.AddGroup(t, dstest.TempName("parent"), false, child)
			store := ldapauth.NewMemStore()
			a := storeAuth(t, flagsmithEnv(srv.URL,
				ldapauth.EnvSearchFilters, "login_group", ldapauth.EnvLoginGroup, parent,
				ldapauth.EnvSyncRelations, "sync_user_groups", ldapauth.EnvOrganisationID, "1",
				ldapauth.EnvSyncedGroups, parent, ldapauth.EnvNestedGroups, nested,
				ldapauth.EnvSyncUsername, dstest.ServiceDN, ldapauth.EnvSyncPassword, dstest.ServicePassword), store)
			created := runSync(t, a, ldapauth.SyncOptions{CreateUsers: true, DryRun: true})
			assert.ElementsMatch(t, []string{uid, other}, created.UsersCreated, "CreateUsers finds the nested members, as a login admits them")
			loginAll(t, a, uid, other)
			require.ElementsMatch(t, []string{uid, other}, members(store, parent))
			rep := runSync(t, a, ldapauth.SyncOptions{})
			assert.Zero(t, rep.Counts.Changes(), "%s", rep)

			srv.RemoveMember(t, childCN, dn)
			rep = runSync(t, a, ldapauth.SyncOptions{Force: true})
			assert.Equal(t, []string{uid}, rep.UsersRemoved, "out of the child, out of the login group")
			assert.Equal(t, []string{other}, members(store, parent))
		})
	}
}

// LDAP_AUTH_EXCLUDE_DISABLED on 389-DS filters on nsAccountLock (the
// directory type read from the root DSE), whatever the value's case: a
// user disabled after logging in is removed by the sync; without the
// setting the sync keeps them.
func TestSyncExcludeDisabled(t *testing.T) {
	srv := dstest.Shared(t)
	f := newSyncFixture(t, srv, 4)
	store := ldapauth.NewMemStore()
	a := storeAuth(t, f.env(), store)
	loginAll(t, a, f.users...)
	srv.Disable(t, f.dns[f.users[1]], "TRUE")
	srv.Disable(t, f.dns[f.users[2]], "true")
	srv.Disable(t, f.dns[f.users[3]], "false") // not disabled

	rep := runSync(t, a, ldapauth.SyncOptions{DryRun: true})
	assert.Empty(t, rep.UsersRemoved, "without LDAP_AUTH_EXCLUDE_DISABLED disabled users stay")

	for _, dirType := range []string{"auto", "389ds"} {
		t.Run(dirType, func(t *testing.T) {
			a := storeAuth(t, f.env(ldapauth.EnvExcludeDisabled, "true", ldapauth.EnvDirectoryType, dirType), store)
			rep := runSync(t, a, ldapauth.SyncOptions{DryRun: true, Force: true})
			assert.ElementsMatch(t, []string{f.users[1], f.users[2]}, rep.UsersRemoved)
			assert.Equal(t, 2, rep.DirectoryUsers)
		})
	}
	// A login searched by the service account leaves them out too (their
	// own bind is refused before that: 53).
	a = storeAuth(t, f.env(ldapauth.EnvExcludeDisabled, "true"), store)
	_, err := login(a, f.users[3], dstest.Password(f.users[3]))
	require.NoError(t, err)
	_, err = login(a, f.users[1], dstest.Password(f.users[1]))
	require.ErrorIs(t, err, ldapauth.ErrAccountDisabled)
}

// LDAP_SYNC_USER_USERNAME as a DN verbatim or a plain name through the
// formatter; a wrong password is the service account's failure.
func TestSyncAccount(t *testing.T) {
	srv := dstest.Shared(t)
	f := newSyncFixture(t, srv, 2)
	account, _ := tempUser(t, srv)
	tests := []struct {
		name, account, password string
		err                     error
	}{
		{"DN", dstest.ServiceDN, dstest.ServicePassword, nil},
		{"plain name through the formatter", account, dstest.Password(account), nil},
		{"plain name, wrong password", account, "wrong-password", ldapauth.ErrServiceAccount},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := storeAuth(t, f.env(ldapauth.EnvSyncUsername, tt.account, ldapauth.EnvSyncPassword, tt.password), ldapauth.NewMemStore())
			rep, err := a.Sync(context.Background(), ldapauth.SyncOptions{DryRun: true, CreateUsers: true})
			if tt.err == nil {
				require.NoError(t, err)
				assert.Equal(t, 2, rep.DirectoryUsers)
				return
			}
			require.ErrorIs(t, err, ldapauth.ErrSyncAborted)
			require.ErrorIs(t, err, tt.err)
			assert.NotErrorIs(t, err, ldapauth.ErrInvalidCredentials)
			assert.NotContains(t, err.Error(), "wrong-password")
		})
	}
}

// 389-DS restarted in the middle of the paged read: ErrUnavailable,
// nothing removed even forced; the next run completes. On a server of its
// own.
func TestSyncServerRestartMidway(t *testing.T) {
	srv := dstest.Start(t)
	f := newSyncFixture(t, srv, 30)
	store := ldapauth.NewMemStore()
	a := storeAuth(t, f.env(ldapauth.EnvSyncPageSize, "10"), store)
	runSync(t, a, ldapauth.SyncOptions{CreateUsers: true})
	srv.DeleteEntry(t, f.dns[f.users[0]])
	before := snapshotUsers(t, store)

	rep, err := a.Sync(context.Background(), ldapauth.SyncOptions{Force: true, Progress: func(p ldapauth.SyncProgress) {
		if p.Phase == ldapauth.SyncReadUsers && p.Pages == 2 {
			srv.Restart(t)
		}
	}})
	require.ErrorIs(t, err, ldapauth.ErrSyncAborted)
	require.ErrorIs(t, err, ldapauth.ErrUnavailable)
	assert.Nil(t, rep)
	assert.Equal(t, before, snapshotUsers(t, store), "nothing removed")

	rep = runSync(t, a, ldapauth.SyncOptions{})
	assert.Equal(t, []string{f.users[0]}, rep.UsersRemoved)
}
