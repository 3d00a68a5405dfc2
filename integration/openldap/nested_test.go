package openldap_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/go-ldap/ldap/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/internal/slapdtest"
	"github.com/go-ldapauth/ldapauth/storetest"
)

// LDAP_AUTH_NESTED_GROUPS=walk on OpenLDAP, which has no in-chain rule: the
// login group and a synced group reached through nested-child, also when
// the groups form a cycle.
func TestNestedGroupsWalkOpenLDAP(t *testing.T) {
	srv := slapdtest.Start(t)
	ctx := context.Background()
	auth := func(t *testing.T, nested, loginGroup string) (*ldapauth.Authenticator, *ldapauth.MemStore) {
		cfg, err := ldapauth.LoadConfig(env(map[string]string{
			"LDAP_AUTH_URL":                          srv.URL,
			"LDAP_AUTH_FORMAT_SEARCH_FILTERS":        "login_group",
			"LDAP_LOGIN_GROUP":                       slapdtest.GroupDN(loginGroup),
			"LDAP_AUTH_SYNC_USER_RELATIONS":          "sync_user_groups",
			"LDAP_DEFAULT_FLAGSMITH_ORGANISATION_ID": "1",
			"LDAP_SYNCED_GROUPS":                     slapdtest.GroupDN("nested-parent"),
			"LDAP_AUTH_NESTED_GROUPS":                nested,
		}))
		require.NoError(t, err)
		store := ldapauth.NewMemStore()
		cfg.Store = store
		a, err := ldapauth.New(cfg)
		require.NoError(t, err)
		t.Cleanup(func() { a.Close() })
		return a, store
	}
	tests := []struct {
		name, nested, group, user string
		login, synced             bool
	}{
		{"off: nested member refused", "off", "nested-parent", "carol", false, false},
		{"walk: nested member admitted", "walk", "nested-parent", "carol", true, true},
		{"walk: direct member", "walk", "ldapusers", "carol", true, true},
		{"walk: not a member", "walk", "nested-parent", "alice", false, false},
		{"walk: not in the synced group", "walk", "ldapusers", "alice", true, false},
	}
	run := func(t *testing.T) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				a, store := auth(t, tt.nested, tt.group)
				_, err := a.Authenticate(ctx, tt.user, slapdtest.Password(tt.user))
				if !tt.login {
					require.ErrorIs(t, err, ldapauth.ErrNotPermitted)
					return
				}
				require.NoError(t, err)
				members, _ := storetest.Members(store, slapdtest.GroupDN("nested-parent"))
				assert.Equal(t, tt.synced, len(members) == 1 && members[0] == tt.user, "members %v", members)
			})
		}
	}
	t.Run("tree", run)
	// nested-parent ⊂ nested-child ⊂ nested-parent: the walk visits each
	// group once and ends.
	srv.AddMember(t, "nested-child", slapdtest.GroupDN("nested-parent"))
	t.Run("cycle", run)
}

// A chain of groups deeper than MaxNestingDepth ends the walk: the group at
// the bound counts, the one above it does not.
func TestNestedGroupsWalkDepthBound(t *testing.T) {
	srv := slapdtest.Start(t)
	admin := srv.Admin(t)
	chain := func(i int) string { return slapdtest.GroupDN(fmt.Sprintf("chain%02d", i)) }
	member := slapdtest.UserDN("carol")
	for i := 1; i <= ldapauth.MaxNestingDepth+1; i++ {
		req := ldap.NewAddRequest(chain(i), nil)
		req.Attribute("objectClass", []string{"groupOfNames"})
		req.Attribute("member", []string{member})
		require.NoError(t, admin.Add(req))
		member = chain(i)
	}
	for _, tt := range []struct {
		depth int
		ok    bool
	}{{1, true}, {ldapauth.MaxNestingDepth, true}, {ldapauth.MaxNestingDepth + 1, false}} {
		t.Run(fmt.Sprint(tt.depth), func(t *testing.T) {
			cfg, err := ldapauth.LoadConfig(env(map[string]string{
				"LDAP_AUTH_URL":                   srv.URL,
				"LDAP_AUTH_FORMAT_SEARCH_FILTERS": "login_group",
				"LDAP_LOGIN_GROUP":                chain(tt.depth),
				"LDAP_AUTH_NESTED_GROUPS":         "walk",
			}))
			require.NoError(t, err)
			a, err := ldapauth.New(cfg)
			require.NoError(t, err)
			defer a.Close()
			_, err = a.Authenticate(context.Background(), "carol", slapdtest.Password("carol"))
			if tt.ok {
				assert.NoError(t, err)
			} else {
				assert.ErrorIs(t, err, ldapauth.ErrNotPermitted)
			}
		})
	}
}

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// The sync with a login group whose only member is a group
// (LDAP_AUTH_NESTED_GROUPS=walk, login group nested-parent, which holds
// nested-child, which holds carol): the sync treats users as a login does.
// CreateUsers creates carol, the one user a login admits; a later run keeps
// her; once she leaves nested-child, a login refuses her and the sync
// removes her.
func TestSyncNestedLoginGroupWalk(t *testing.T) {
	srv := slapdtest.Start(t)
	store := ldapauth.NewMemStore()
	a := syncAuth(t, jobEnv(srv, slapdtest.ServiceDN, slapdtest.ServicePassword,
		ldapauth.EnvSearchFilters, "flagsmith_ldap.ldap.login_group_search_filter",
		ldapauth.EnvLoginGroup, slapdtest.GroupDN("nested-parent"),
		ldapauth.EnvNestedGroups, "walk",
		ldapauth.EnvSyncedGroups, slapdtest.GroupDN("nested-parent"),
	), store)

	rep := runSync(t, a, ldapauth.SyncOptions{CreateUsers: true})
	assert.Equal(t, []string{"carol"}, rep.UsersCreated, "the nested member, and no one else")
	assert.Equal(t, 1, rep.DirectoryUsers)

	again := runSync(t, a, ldapauth.SyncOptions{CreateUsers: true})
	assert.Zero(t, again.Counts.Changes(), "kept: %s", again)

	// groupOfNames needs a member: the service account, not a user, stays.
	srv.AddMember(t, "nested-child", slapdtest.ServiceDN)
	srv.RemoveMember(t, "nested-child", slapdtest.UserDN("carol"))
	_, err := login(a, "carol", slapdtest.Password("carol"))
	require.ErrorIs(t, err, ldapauth.ErrNotPermitted, "a login refuses her now")
	rep = runSync(t, a, ldapauth.SyncOptions{Force: true})
	assert.Equal(t, []string{"carol"}, rep.UsersRemoved)
	assert.Empty(t, snapshot(t, store).Users)
}

// The sync's walk down from the login group stops where the login's walk
// up from the user does: a group MaxNestingDepth levels above the user
// counts, one more does not.
func TestSyncNestedLoginGroupWalkDepthBound(t *testing.T) {
	srv := slapdtest.Start(t)
	admin := srv.Admin(t)
	chain := func(i int) string { return slapdtest.GroupDN(fmt.Sprintf("chain%02d", i)) }
	member := slapdtest.UserDN("carol")
	for i := 1; i <= ldapauth.MaxNestingDepth+1; i++ {
		req := ldap.NewAddRequest(chain(i), nil)
		req.Attribute("objectClass", []string{"groupOfNames"})
		req.Attribute("member", []string{member})
		require.NoError(t, admin.Add(req))
		member = chain(i)
	}
	for _, tt := range []struct {
		depth   int
		created []string
	}{{ldapauth.MaxNestingDepth, []string{"carol"}}, {ldapauth.MaxNestingDepth + 1, nil}} {
		t.Run(fmt.Sprint(tt.depth), func(t *testing.T) {
			a := syncAuth(t, jobEnv(srv, slapdtest.ServiceDN, slapdtest.ServicePassword,
				ldapauth.EnvSearchFilters, "flagsmith_ldap.ldap.login_group_search_filter",
				ldapauth.EnvLoginGroup, chain(tt.depth),
				ldapauth.EnvNestedGroups, "walk",
			), ldapauth.NewMemStore())
			rep := runSync(t, a, ldapauth.SyncOptions{CreateUsers: true, DryRun: true})
			assert.Equal(t, tt.created, rep.UsersCreated)
		})
	}
}
