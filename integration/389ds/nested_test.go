package ds389_test

import (
	"context"
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth"
	"github.com/go-ldapauth/ldapauth/internal/dstest"
	"github.com/go-ldapauth/ldapauth/internal/faultproxy"
	"github.com/go-ldapauth/ldapauth/storetest"
)

// nestedEnv: the login group and one synced group, with nesting as nested.
func nestedEnv(srv *dstest.Server, nested, loginGroup, synced string, extra ...string) map[string]string {
	return flagsmithEnv(srv.URL, append([]string{
		ldapauth.EnvSearchFilters, "login_group",
		ldapauth.EnvLoginGroup, dstest.GroupDN(loginGroup),
		ldapauth.EnvSyncRelations, "sync_user_groups",
		ldapauth.EnvOrganisationID, "1",
		ldapauth.EnvSyncedGroups, dstest.GroupDN(synced),
		ldapauth.EnvNestedGroups, nested,
	}, extra...)...)
}

// 389-DS's memberOf plugin lists nested groups in memberOf, for member
// (groupOfNames) and uniqueMember (groupOfUniqueNames) alike: a nested
// member belongs with walk, and already with off, since memberOf says so.
func TestNestedGroups(t *testing.T) {
	srv := dstest.Shared(t)
	tests := []struct {
		name, nested, group, synced, user string
		login, inSynced                   bool
	}{
		{"off: memberOf lists nesting", "off", "nested-parent", "nested-parent", "carol", true, true},
		{"walk: nested member", "walk", "nested-parent", "nested-parent", "carol", true, true},
		{"walk: direct member", "walk", "ldapusers", "nested-parent", "carol", true, true},
		{"walk: not a member", "walk", "nested-parent", "nested-parent", "alice", false, false},
		{"walk: not in the synced group", "walk", "ldapusers", "nested-parent", "alice", true, false},
		{"walk: nested uniqueMember", "walk", "unique-parent", "unique-parent", "gina", true, true},
		{"off: nested uniqueMember", "off", "unique-parent", "unique-parent", "gina", true, true},
		{"walk: not a uniqueMember", "walk", "unique-parent", "unique-parent", "alice", false, false},
	}
	for _, mode := range modes() {
		t.Run(mode.name, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					a, store := newAuth(t, nestedEnv(srv, tt.nested, tt.group, tt.synced, mode.extra...))
					_, err := login(a, tt.user, dstest.Password(tt.user))
					if !tt.login {
						require.ErrorIs(t, err, ldapauth.ErrNotPermitted)
						return
					}
					require.NoError(t, err)
					members, _ := storetest.Members(store, dstest.GroupDN(tt.synced))
					assert.Equal(t, tt.inSynced, len(members) == 1 && members[0] == tt.user, "members %v", members)
				})
			}
		})
	}

	// A nesting made at run time: the plugin updates memberOf at once.
	t.Run("nesting added", func(t *testing.T) {
		uid, dn := tempUser(t, srv)
		child := srv.AddGroup(t, dstest.TempName("child"), true, dn)
		parent := srv.AddGroup(t, dstest.TempName("parent"), false, child)
		a, _ := newAuth(t, flagsmithEnv(srv.URL, ldapauth.EnvSearchFilters, "login_group", ldapauth.EnvLoginGroup, parent,
			ldapauth.EnvNestedGroups, "walk"))
		u, err := login(a, uid, dstest.Password(uid))
		require.NoError(t, err)
		assert.Contains(t, u.Groups, parent)
	})
}

// LDAP_AUTH_NESTED_GROUPS=active_directory on 389-DS, which lacks
// LDAP_MATCHING_RULE_IN_CHAIN: a configuration error naming the variable
// and walk, never a per-login failure; known from the root DSE, from the
// setting, or from the server's answer (12) when the type is "other".
func TestNestedActiveDirectoryRefused(t *testing.T) {
	srv := dstest.Shared(t)
	assertConfig := func(t *testing.T, err error) {
		t.Helper()
		require.ErrorIs(t, err, ldapauth.ErrConfig)
		var cerr *ldapauth.ConfigError
		require.ErrorAs(t, err, &cerr)
		assert.Equal(t, ldapauth.EnvNestedGroups, cerr.Variables[0])
		assert.Contains(t, cerr.Error(), "LDAP_AUTH_NESTED_GROUPS=walk")
		assert.NotErrorIs(t, err, ldapauth.ErrInvalidCredentials)
		assert.NotErrorIs(t, err, ldapauth.ErrNotPermitted)
	}
	t.Run("root DSE", func(t *testing.T) {
		for _, mode := range modes() {
			t.Run(mode.name, func(t *testing.T) {
				a, store := newAuth(t, nestedEnv(srv, "active_directory", "nested-parent", "nested-parent", mode.extra...))
				for range 2 { // every login says so
					u, err := login(a, "carol", dstest.Password("carol"))
					assert.Nil(t, u)
					assertConfig(t, err)
				}
				assert.Nil(t, storetest.User(store, "carol"))
			})
		}
	})
	t.Run("setting", func(t *testing.T) {
		_, err := ldapauth.LoadConfig(func(k string) (string, bool) {
			v, ok := nestedEnv(srv, "active_directory", "nested-parent", "nested-parent", ldapauth.EnvDirectoryType, "389ds")[k]
			return v, ok
		})
		assertConfig(t, err)
	})
	t.Run("sync", func(t *testing.T) {
		for _, dirType := range []string{"auto", "other"} { // root DSE; answer 12
			t.Run(dirType, func(t *testing.T) {
				a, _ := newAuth(t, nestedEnv(srv, "active_directory", "nested-parent", "nested-parent",
					ldapauth.EnvDirectoryType, dirType,
					ldapauth.EnvSyncUsername, dstest.ServiceDN, ldapauth.EnvSyncPassword, dstest.ServicePassword))
				rep, err := a.Sync(context.Background(), ldapauth.SyncOptions{Force: true})
				assert.Nil(t, rep)
				require.ErrorIs(t, err, ldapauth.ErrSyncAborted)
				assertConfig(t, err)
			})
		}
	})
	t.Run("answer 12", func(t *testing.T) {
		// The login group's in-chain filter, then a synced group's in-chain
		// check (login group filter without a group).
		for name, env := range map[string]map[string]string{
			"login group": nestedEnv(srv, "active_directory", "nested-parent", "nested-parent", ldapauth.EnvDirectoryType, "other"),
			"synced group": flagsmithEnv(srv.URL, ldapauth.EnvSyncRelations, "sync_user_groups", ldapauth.EnvOrganisationID, "1",
				ldapauth.EnvSyncedGroups, dstest.GroupDN("marvel"), ldapauth.EnvNestedGroups, "active_directory", ldapauth.EnvDirectoryType, "other"),
		} {
			t.Run(name, func(t *testing.T) {
				a, _ := newAuth(t, env)
				_, err := login(a, "alice", dstest.Password("alice"))
				assertConfig(t, err)
				var lerr *ldap.Error
				require.ErrorAs(t, err, &lerr, "the server's answer is kept")
				assert.Equal(t, uint16(ldap.LDAPResultUnavailableCriticalExtension), lerr.ResultCode)
			})
		}
	})
}

// TestWalkCostsNothing: on 389-DS, whose memberOf lists nested groups,
// LDAP_AUTH_NESTED_GROUPS=walk sends nothing more per login than off, even
// for a synced group the user is not in (where a walk would search for the
// groups above hers); forced to walk (as on a directory whose memberOf
// lists direct groups only), the same login reads more. Measured as the
// bytes the server sends per login, through a proxy, after a first login
// (which also reads the root DSE, once per Authenticator).
func TestWalkCostsNothing(t *testing.T) {
	srv := dstest.Shared(t)
	proxy := faultproxy.Start(t, strings.TrimPrefix(srv.URL, "ldap://"))
	perLogin := func(nested, dirType string) int64 {
		a, _ := newAuth(t, flagsmithEnv(proxy.URL(), ldapauth.EnvDirectoryType, dirType,
			ldapauth.EnvSearchFilters, "login_group", ldapauth.EnvLoginGroup, dstest.GroupDN("nested-parent"),
			ldapauth.EnvSyncRelations, "sync_user_groups", ldapauth.EnvOrganisationID, "1",
			ldapauth.EnvSyncedGroups, dstest.GroupDN("nested-parent")+":"+dstest.GroupDN("staff"),
			ldapauth.EnvNestedGroups, nested))
		_, err := login(a, "carol", dstest.Password("carol"))
		require.NoError(t, err)
		before := proxy.ServerBytes()
		const logins = 5
		for range logins {
			u, err := login(a, "carol", dstest.Password("carol"))
			require.NoError(t, err)
			assert.Contains(t, u.Groups, dstest.GroupDN("nested-parent"))
		}
		return (proxy.ServerBytes() - before) / logins
	}
	off := perLogin("off", "auto")
	walk := perLogin("walk", "auto")
	forced := perLogin("walk", "other")
	t.Logf("server bytes per login: off %d, walk %d, walk forced %d", off, walk, forced)
	assert.Equal(t, off, walk, "walk reads nothing more where memberOf lists nested groups")
	assert.Greater(t, forced, off, "the walk this saves")
}
