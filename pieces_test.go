package ldapauth_test

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/go-ldap/ldap/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/ldaptest"
	"github.com/go-ldapauth/ldapauth/storetest"
)

// countedFilters wraps a built-in builder by embedding it, as a caller
// adding logging or metrics would: it overrides SearchFilters alone.
type countedFilters struct {
	ldapauth.FilterTerms
	calls *atomic.Int32
}

func (f countedFilters) SearchFilters(cfg *ldapauth.Config, lookup map[string]string) ([]string, error) {
	f.calls.Add(1)
	return f.FilterTerms.SearchFilters(cfg, lookup)
}

// countedSyncer wraps the built-in group syncer by embedding it.
type countedSyncer struct {
	ldapauth.SyncUserGroups
	calls *atomic.Int32
}

func (s countedSyncer) SyncRelations(ctx context.Context, cfg *ldapauth.Config, u *ldapauth.User, dir ldapauth.Directory) error {
	s.calls.Add(1)
	return s.SyncUserGroups.SyncRelations(ctx, cfg, u, dir)
}

// A builder wrapping a built-in one is validated as the built-in is: the
// login-group builder refuses to run without a group (it would let
// everyone in), both accept ExcludeDisabled, and the default one refuses a
// login group it would ignore.
func TestWrappedFiltersValidateAsBuiltIn(t *testing.T) {
	const group = "ou=ldapusers,ou=groups,dc=example,dc=com"
	cases := []struct {
		name    string
		builtIn ldapauth.FilterTerms
		edit    func(*ldapauth.Config)
		refused bool
	}{
		{"login group filters without a group", ldapauth.LoginGroupFilters{}, func(*ldapauth.Config) {}, true},
		{"login group filters excluding disabled", ldapauth.LoginGroupFilters{}, func(c *ldapauth.Config) { c.LoginGroup, c.ExcludeDisabled = group, true }, false},
		{"default filters with a login group", ldapauth.DefaultFilters{}, func(c *ldapauth.Config) { c.LoginGroup = group }, true},
		{"default filters excluding disabled", ldapauth.DefaultFilters{}, func(c *ldapauth.Config) { c.ExcludeDisabled = true }, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, f := range []ldapauth.SearchFilterBuilder{tc.builtIn, countedFilters{tc.builtIn, new(atomic.Int32)}} {
				cfg := &ldapauth.Config{URLs: []string{"ldap://127.0.0.1:1"}, SearchFilters: f, DirectoryType: ldapauth.DirectoryOpenLDAP}
				tc.edit(cfg)
				err := cfg.Validate()
				if tc.refused {
					assert.ErrorIs(t, err, ldapauth.ErrConfig, "%T", f)
				} else {
					assert.NoError(t, err, "%T", f)
				}
			}
		})
	}
}

// A login through a wrapped login-group builder admits and refuses as the
// built-in does, and the wrapper is the one called.
func TestWrappedLoginGroupFiltersLogin(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.DemoDirectory())
	calls := new(atomic.Int32)
	cfg, err := ldapauth.LoadConfig(env(srv.Env()))
	require.NoError(t, err)
	cfg.LoginGroup = srv.GroupDN("ldapusers")
	cfg.SearchFilters = countedFilters{ldapauth.LoginGroupFilters{}, calls}
	a, err := ldapauth.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { a.Close() })

	_, err = a.Authenticate(context.Background(), "alice", "alice-password")
	require.NoError(t, err, "alice is in the login group")
	_, err = a.Authenticate(context.Background(), "bob", "bob-password")
	require.ErrorIs(t, err, ldapauth.ErrNotPermitted, "bob is outside the login group")
	assert.Positive(t, calls.Load(), "the wrapper built the filters")
}

// A syncer wrapping SyncUserGroups keeps the groups as the built-in does,
// on login and in the sync job (which refuses any syncer that keeps no
// relations), and needs what the built-in needs.
func TestWrappedGroupSyncerBehavesAsBuiltIn(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.DemoDirectory())
	calls := new(atomic.Int32)
	wrapped := func(c *ldapauth.Config) { c.SyncRelations = countedSyncer{calls: calls} }

	cfg, err := ldapauth.LoadConfig(env(syncVars(srv, nil)))
	require.NoError(t, err)
	wrapped(cfg)
	_, err = ldapauth.New(cfg)
	require.ErrorIs(t, err, ldapauth.ErrConfig, "the group syncer needs a store")
	cfg.OrganisationID = ""
	require.ErrorIs(t, cfg.Validate(), ldapauth.ErrConfig, "the group syncer needs the organisation")

	store := ldapauth.NewMemStore()
	a := syncAuth(t, syncVars(srv, nil), store, wrapped)
	login(t, a, "bob")
	assert.Positive(t, calls.Load(), "the login ran the wrapper")
	members, ok := storetest.Members(store, srv.GroupDN("marvel"))
	require.True(t, ok, "the login created the synced group")
	assert.Equal(t, []string{"bob"}, members)

	d := ldaptest.DemoDirectory()
	editUser(t, &d, "bob", func(u *ldaptest.User) { u.Groups = []string{"readers"} })
	require.NoError(t, srv.SetDirectory(d))
	rep := runSync(t, a, ldapauth.SyncOptions{})
	assert.Equal(t, []ldapauth.Membership{{GroupDN: srv.GroupDN("marvel"), Username: "bob"}}, rep.MembershipsRemoved, "the sync planned the groups")
}

// The sync job runs with a custom relation syncer: it syncs the users, then
// calls the syncer for each user the directory returned and the store
// holds, with a directory it can search; never in a dry run.
func TestSyncCallsCustomSyncer(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.DemoDirectory())
	var mu sync.Mutex
	var called []string
	syncer := ldapauth.RelationSyncerFunc(func(ctx context.Context, cfg *ldapauth.Config, u *ldapauth.User, dir ldapauth.Directory) error {
		res, err := dir.Search(ctx, ldap.NewSearchRequest(u.DN, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", []string{"cn"}, nil))
		if err != nil {
			return err
		}
		require.Len(t, res.Entries, 1)
		mu.Lock()
		defer mu.Unlock()
		called = append(called, u.Username)
		return nil
	})
	vars := syncVars(srv, map[string]string{"LDAP_AUTH_SYNC_USER_RELATIONS": "", "LDAP_SYNCED_GROUPS": "", "LDAP_DEFAULT_FLAGSMITH_ORGANISATION_ID": ""})
	store := ldapauth.NewMemStore()
	a := syncAuth(t, vars, store, func(c *ldapauth.Config) { c.SyncRelations = syncer })
	login(t, a, "alice", "bob")
	require.Equal(t, []string{"alice", "bob"}, called, "a login calls the syncer")

	called = nil
	rep := runSync(t, a, ldapauth.SyncOptions{DryRun: true})
	assert.Empty(t, called, "a dry run writes nothing, the syncer included")
	assert.Empty(t, rep.OrganisationJoins, "no organisation is set")

	runSync(t, a, ldapauth.SyncOptions{})
	slices.Sort(called)
	assert.Equal(t, []string{"alice", "bob"}, called, "the sync called the syncer for the stored users")

	called = nil
	runSync(t, a, ldapauth.SyncOptions{CreateUsers: true})
	assert.Contains(t, called, "mallory", "and for the users it creates")
	assert.NotNil(t, storetest.User(store, "mallory"))
}
