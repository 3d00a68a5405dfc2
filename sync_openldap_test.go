package ldapauth_test

import (
	"context"
	"fmt"
	"iter"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/internal/faultproxy"
	"github.com/go-ldapauth/ldapauth/internal/slapdtest"
	"github.com/go-ldapauth/ldapauth/storetest"
)

// Real OpenLDAP, for what GLAuth cannot show: a paged read interrupted by
// the caller or by the network (faultproxy). The sync job's directory cases
// (paging over 5,000 users, size limits, refused paging, removals, groups,
// nesting, a restart) are in integration/openldap. slapdtest skips these
// without slapd, and fails them with LDAPAUTH_REQUIRE_SLAPD=1 (CI).

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

// A read that fails part-way keeps what the pages read before the failure
// wrote (each page's creates are the directory's truth, written as the
// page is read) and removes nothing: a stored user the directory does not
// hold stays, and the next complete run finishes the work.
func TestSyncOpenLDAPFailedReadKeepsEarlierPages(t *testing.T) {
	srv := slapdtest.StartWith(t, slapdtest.Options{GeneratedUsers: 1000})
	ghost := &ldapauth.User{DN: "uid=ghost," + slapdtest.PeopleDN, Username: "ghost", Fields: map[string]string{"username": "ghost"}}
	newStore := func(t *testing.T) *ldapauth.MemStore {
		store := ldapauth.NewMemStore()
		require.NoError(t, store.SaveUser(t.Context(), ghost))
		return store
	}
	vars := map[string]string{"LDAP_SYNC_PAGE_SIZE": "100"}
	total := 1007 // the generated users and the seven of slapdtest's own directory
	t.Run("cancelled after two pages", func(t *testing.T) {
		store := newStore(t)
		a := syncAuth(t, slapdSyncVars(srv, slapdtest.ServiceDN, slapdtest.ServicePassword, vars), store)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		rep, err := a.Sync(ctx, ldapauth.SyncOptions{CreateUsers: true, Force: true, Progress: func(p ldapauth.SyncProgress) {
			if p.Pages == 2 {
				cancel()
			}
		}})
		require.ErrorIs(t, err, ldapauth.ErrSyncAborted)
		require.ErrorIs(t, err, context.Canceled)
		assert.Nil(t, rep)
		got := snapshot(t, store)
		assert.Len(t, got.Users, 201, "the two pages read, 100 users each, and ghost")
		assert.Contains(t, got.Users, "ghost", "nothing removed")
		assert.Equal(t, []string{"1"}, got.Organisations(slapdtest.GeneratedUID(1)), "a page's users are written with their organisation join")
		members, _ := got.Members(slapdtest.GroupDN("readers"))
		assert.Empty(t, members, "memberships wait for the whole read")

		rep = runSync(t, a, ldapauth.SyncOptions{CreateUsers: true, Force: true})
		assert.Len(t, rep.UsersCreated, total-200, "the next run creates the rest")
		assert.Equal(t, []string{"ghost"}, rep.UsersRemoved)
		assert.Len(t, snapshot(t, store).Users, total)
	})
	// The cut comes in the second or third page. With the store gated,
	// the first pages wait for it, which comes in only once the connection
	// is cut: they are written all the same, and the failure names the
	// page after them.
	for _, gated := range []bool{false, true} {
		t.Run(fmt.Sprintf("connection cut after the first page, store read after the cut=%v", gated), func(t *testing.T) {
			store := newStore(t)
			proxy := faultproxy.Start(t, strings.TrimPrefix(srv.URL, "ldap://"))
			var us ldapauth.UserStore = store
			if gated {
				us = gatedStore{store, func() bool { return proxy.Accepted() > 0 && proxy.Open() == 0 }}
			}
			a := syncAuth(t, slapdSyncVars(srv, slapdtest.ServiceDN, slapdtest.ServicePassword, map[string]string{
				"LDAP_AUTH_URL": proxy.URL(), "LDAP_SYNC_PAGE_SIZE": "100"}), us)
			proxy.CutAfter(25_000) // pages of 100 entries are about 10 kB here
			_, err := a.Sync(context.Background(), ldapauth.SyncOptions{CreateUsers: true, Force: true})
			require.ErrorIs(t, err, ldapauth.ErrSyncAborted)
			require.ErrorIs(t, err, ldapauth.ErrUnavailable)
			var aerr *ldapauth.SyncAbortError
			require.ErrorAs(t, err, &aerr)
			require.Greater(t, aerr.Page, 1, "cut after the first page")
			got := snapshot(t, store)
			assert.Len(t, got.Users, 100*(aerr.Page-1)+1, "the pages read before the cut, and ghost")
			assert.Contains(t, got.Users, "ghost", "nothing removed")
		})
	}
	t.Run("a dry run writes nothing", func(t *testing.T) {
		store := newStore(t)
		a := syncAuth(t, slapdSyncVars(srv, slapdtest.ServiceDN, slapdtest.ServicePassword, vars), store)
		rep := runSync(t, a, ldapauth.SyncOptions{CreateUsers: true, DryRun: true})
		assert.Len(t, rep.UsersCreated, total)
		assert.Equal(t, []string{"ghost"}, snapshot(t, store).Users)
	})
}

// Entries without memberOf (here hidden from the sync account for alice
// and dave) get their memberships from the synced groups' entries. For a
// few such entries the sync asks each group's entry whether it lists them
// (a filter the server evaluates) instead of reading every member value:
// the answers must be those of the values. alice is in readers, dave in no
// group; bob, who keeps his memberOf, leaves readers later.
func TestSyncOpenLDAPEntriesWithoutMemberOf(t *testing.T) {
	hide := func(uid string) string {
		return fmt.Sprintf("access to dn.exact=%q attrs=memberOf\n\tby dn.exact=%q none\n\tby * break\n", slapdtest.UserDN(uid), slapdtest.ServiceDN)
	}
	srv := slapdtest.StartWith(t, slapdtest.Options{ACL: hide("alice") + hide("dave"), GeneratedUsers: 500, GeneratedUserGroups: []string{"readers"}})
	for _, dirType := range []string{"openldap", "other"} { // probed, read whole
		t.Run(dirType, func(t *testing.T) {
			store := ldapauth.NewMemStore()
			a := syncAuth(t, slapdSyncVars(srv, slapdtest.ServiceDN, slapdtest.ServicePassword, map[string]string{"LDAP_AUTH_DIRECTORY_TYPE": dirType}), store)
			runSync(t, a, ldapauth.SyncOptions{CreateUsers: true})
			readers, _ := storetest.Members(store, slapdtest.GroupDN("readers"))
			assert.Len(t, readers, 502)
			assert.Contains(t, readers, "alice", "listed by the group's entry")
			assert.NotContains(t, readers, "dave")
			marvel, _ := storetest.Members(store, slapdtest.GroupDN("marvel"))
			assert.NotContains(t, marvel, "alice")

			srv.RemoveMember(t, "readers", slapdtest.UserDN("alice"))
			t.Cleanup(func() { srv.AddMember(t, "readers", slapdtest.UserDN("alice")) })
			rep := runSync(t, a, ldapauth.SyncOptions{})
			assert.Equal(t, []ldapauth.Membership{{GroupDN: slapdtest.GroupDN("readers"), Username: "alice"}}, rep.MembershipsRemoved, "%s", rep)
			assert.Empty(t, rep.MembershipsAdded)
		})
	}
}

// A posixGroup lists a user by memberUid in another case than the entry's
// uid: ldapauth compares names case-insensitively, the server's memberUid
// filter does not, so the probe of a group's entry must not decide there:
// the sync finds the same membership whether it probes (openldap) or reads
// the group whole (other), as a login does.
func TestSyncOpenLDAPMemberUidCaseProbed(t *testing.T) {
	hide := fmt.Sprintf("access to dn.exact=%q attrs=memberOf\n\tby dn.exact=%q none\n\tby * break\n", slapdtest.UserDN("alice"), slapdtest.ServiceDN)
	srv := slapdtest.StartWith(t, slapdtest.Options{ACL: hide})
	posix := slapdtest.GroupDN("posix-devs")
	add := ldap.NewAddRequest(posix, nil)
	add.Attribute("objectClass", []string{"posixGroup"})
	add.Attribute("cn", []string{"posix-devs"})
	add.Attribute("gidNumber", []string{"5000"})
	add.Attribute("memberUid", []string{"ALICE"})
	require.NoError(t, srv.Admin(t).Add(add))
	for _, dirType := range []string{"openldap", "other"} {
		t.Run(dirType, func(t *testing.T) {
			store := ldapauth.NewMemStore()
			a := syncAuth(t, slapdSyncVars(srv, slapdtest.ServiceDN, slapdtest.ServicePassword, map[string]string{
				"LDAP_AUTH_DIRECTORY_TYPE": dirType, "LDAP_SYNCED_GROUPS": posix}), store)
			runSync(t, a, ldapauth.SyncOptions{CreateUsers: true})
			got, _ := storetest.Members(store, posix)
			assert.Equal(t, []string{"alice"}, got)
		})
	}
}

// gatedStore is a store whose users stream only once open says so (or
// the sync gives up on them).
type gatedStore struct {
	ldapauth.UserStore
	open func() bool
}

func (s gatedStore) Users(ctx context.Context) iter.Seq2[ldapauth.StoredUser, error] {
	return func(yield func(ldapauth.StoredUser, error) bool) {
		for !s.open() {
			select {
			case <-ctx.Done():
				yield(ldapauth.StoredUser{}, ctx.Err())
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
		for u, err := range s.UserStore.Users(ctx) {
			if !yield(u, err) {
				return
			}
		}
	}
}
