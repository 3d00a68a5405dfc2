package ldapauth

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/go-ldap/ldap/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The one membership rule, as the login syncer and the batch sync use it.
// Directories with memberOf exercise it end to end; the group-entry side
// has no positive case there (the memberof overlay always writes memberOf),
// so it is covered here.
func TestMemberByRule(t *testing.T) {
	entry := func() *groupEntry {
		return &groupEntry{dns: []string{"UID=Alice, OU=People,dc=example,dc=com"}, uids: []string{"Bob"}}
	}
	tests := []struct {
		name                    string
		hasMemberOf, inMemberOf bool
		group                   *groupEntry
		dn, username            string
		member, known           bool
	}{
		{"memberOf lists it", true, true, nil, "uid=x,dc=y", "x", true, true},
		{"memberOf does not", true, false, entry(), "uid=alice,ou=people,dc=example,dc=com", "alice", false, true},
		{"no memberOf: member by DN", false, false, entry(), "uid=alice,ou=people,dc=example,dc=com", "alice", true, true},
		{"no memberOf: memberUid", false, false, entry(), "uid=bob,ou=people,dc=example,dc=com", "bob", true, true},
		{"no memberOf: not listed", false, false, entry(), "uid=carol,ou=people,dc=example,dc=com", "carol", false, true},
		{"no memberOf, no group entry", false, false, nil, "uid=carol,ou=people,dc=example,dc=com", "carol", false, false},
	}
	for _, tt := range tests {
		for _, indexed := range []bool{false, true} {
			g := tt.group
			if g != nil && indexed {
				g.index(map[string]struct{}{DNKey(tt.dn): {}}, map[string]struct{}{strings.ToLower(tt.username): {}})
			}
			member, known := memberByRule(tt.hasMemberOf, tt.inMemberOf, g, tt.dn, tt.username)
			assert.Equal(t, tt.member, member, "%s (indexed %v)", tt.name, indexed)
			assert.Equal(t, tt.known, known, "%s (indexed %v)", tt.name, indexed)
		}
	}
}

// searchFunc answers a Directory's searches with a function: a server
// answer no test server gives on demand (an empty answer to a base search
// of a group a user entry without memberOf names, from an ACL).
type searchFunc func(req *ldap.SearchRequest) (*ldap.SearchResult, error)

func (f searchFunc) Search(_ context.Context, req *ldap.SearchRequest) (*ldap.SearchResult, error) {
	return f(req)
}

// A login removes a membership only when the group's entry confirms the
// user is not a member; an entry the directory does not return (an ACL,
// GLAuth) leaves it as it is, as the batch sync does.
func TestSyncUserGroupsUnconfirmedGroupKeepsMembership(t *testing.T) {
	ctx := context.Background()
	const listed, hidden = "cn=listed,ou=groups,dc=example,dc=com", "cn=hidden,ou=groups,dc=example,dc=com"
	u := &User{DN: "uid=alice,ou=people,dc=example,dc=com", Username: "alice", Fields: map[string]string{"username": "alice"}}
	store := NewMemStore()
	require.NoError(t, store.SaveUser(ctx, u))
	for _, g := range []string{listed, hidden} {
		require.NoError(t, store.SaveGroup(ctx, Group{DN: g, Name: GroupName(g)}))
		require.NoError(t, store.SetMember(ctx, g, "alice", true))
	}
	dir := searchFunc(func(req *ldap.SearchRequest) (*ldap.SearchResult, error) {
		if req.BaseDN == listed {
			e := ldap.NewEntry(listed, map[string][]string{"member": {"uid=bob,ou=people,dc=example,dc=com"}})
			return &ldap.SearchResult{Entries: []*ldap.Entry{e}}, nil
		}
		return &ldap.SearchResult{}, nil // success, no entry
	})
	cfg := &Config{OrganisationID: "1", SyncedGroups: []string{listed, hidden}, Store: store}
	require.NoError(t, SyncUserGroups{}.SyncRelations(ctx, cfg, u, dir))

	members, _ := storeMembers(t, store, listed)
	assert.Empty(t, members, "the entry confirms alice left")
	members, _ = storeMembers(t, store, hidden)
	assert.Equal(t, []string{"alice"}, members, "an unconfirmed group is left alone")
}

// proveGone removes a group only on answers an access rule hiding it
// cannot give: noSuchObject naming an entry above it as matched DN, that
// entry readable, and a one-level search under it without the group.
func TestProveGone(t *testing.T) {
	const group, parent = "cn=team,ou=groups,dc=example,dc=com", "ou=groups,dc=example,dc=com"
	noSuch := func(matched string) error {
		return &ldap.Error{ResultCode: ldap.LDAPResultNoSuchObject, MatchedDN: matched, Err: errors.New("no such object")}
	}
	type answers struct {
		base                   error // the group's base search
		parentEntry, oneLevel  []*ldap.Entry
		parentErr, oneLevelErr error
	}
	tests := []struct {
		name string
		dir  answers
		why  string // "" for proven gone
	}{
		{"deleted", answers{base: noSuch(parent), parentEntry: []*ldap.Entry{{DN: parent}}}, ""},
		{"deleted with its parent", answers{base: noSuch("dc=example,dc=com"), parentEntry: []*ldap.Entry{{DN: "dc=example,dc=com"}}}, ""},
		{"hidden: no matched DN", answers{base: noSuch("")}, "names no matched DN"},
		{"matched DN elsewhere", answers{base: noSuch("ou=people,dc=example,dc=com")}, "is not above the group"},
		{"parent not readable", answers{base: noSuch(parent), parentErr: noSuch("dc=example,dc=com")}, "cannot read"},
		{"parent not shown", answers{base: noSuch(parent)}, "is not shown"},
		{"one-level search shows it", answers{base: noSuch(parent), parentEntry: []*ldap.Entry{{DN: parent}}, oneLevel: []*ldap.Entry{{DN: "CN=Team,OU=Groups,DC=example,DC=com"}}}, "returns"},
		{"found on a second read", answers{}, "second read"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var filters []string
			dir := searchFunc(func(req *ldap.SearchRequest) (*ldap.SearchResult, error) {
				switch {
				case req.BaseDN == group:
					if tt.dir.base != nil {
						return nil, tt.dir.base
					}
					return &ldap.SearchResult{Entries: []*ldap.Entry{{DN: group}}}, nil
				case req.Scope == ldap.ScopeBaseObject:
					return &ldap.SearchResult{Entries: tt.dir.parentEntry}, tt.dir.parentErr
				default:
					filters = append(filters, req.Filter)
					return &ldap.SearchResult{Entries: tt.dir.oneLevel}, tt.dir.oneLevelErr
				}
			})
			why, err := proveGone(context.Background(), dir, group)
			require.NoError(t, err)
			if tt.why == "" {
				assert.Empty(t, why)
				require.Len(t, filters, 1)
				assert.Contains(t, []string{"(&(cn=team))", "(&(ou=groups))"}, filters[0], "the next entry on the way to the group, by its RDN")
				return
			}
			assert.Contains(t, why, tt.why)
		})
	}
	t.Run("a dropped connection is an error", func(t *testing.T) {
		dir := searchFunc(func(req *ldap.SearchRequest) (*ldap.SearchResult, error) {
			if req.BaseDN == group {
				return nil, noSuch(parent)
			}
			return nil, ldap.NewError(ldap.ErrorNetwork, errors.New("connection reset"))
		})
		_, err := proveGone(context.Background(), dir, group)
		require.ErrorIs(t, err, ErrUnavailable)
	})
}

// A ranged group read continues from the first answer: it never asks for
// the first range twice.
func TestReadGroupRangesContinue(t *testing.T) {
	const dn = "cn=big,ou=groups,dc=example,dc=com"
	var asked [][]string
	dir := searchFunc(func(req *ldap.SearchRequest) (*ldap.SearchResult, error) {
		asked = append(asked, req.Attributes)
		e := &ldap.Entry{DN: dn}
		if slices.Contains(req.Attributes, "member") {
			e.Attributes = []*ldap.EntryAttribute{{Name: "member;range=0-1", Values: []string{"uid=a,dc=x", "uid=b,dc=x"}}}
		} else {
			e.Attributes = []*ldap.EntryAttribute{{Name: "member;range=2-*", Values: []string{"uid=c,dc=x"}}}
		}
		return &ldap.SearchResult{Entries: []*ldap.Entry{e}}, nil
	})
	g, state, err := readGroupEntry(context.Background(), dir, dn, true)
	require.NoError(t, err)
	assert.Equal(t, groupFound, state)
	assert.Equal(t, []string{"uid=a,dc=x", "uid=b,dc=x", "uid=c,dc=x"}, g.dns)
	assert.Equal(t, [][]string{{"member", "uniqueMember", "memberUid"}, {"member;range=2-*"}}, asked)
}

// NestedGroupsWalk walks the groups above the user once per login, however
// many synced groups are then looked up: one search per level.
func TestWalkOncePerLogin(t *testing.T) {
	ctx := context.Background()
	const a, b = "cn=a,ou=groups,dc=example,dc=com", "cn=b,ou=groups,dc=example,dc=com" // the user is in a; a is in b
	synced := []string{b, "cn=c,ou=groups,dc=example,dc=com", "cn=d,ou=groups,dc=example,dc=com"}
	var searches int
	dir := searchFunc(func(req *ldap.SearchRequest) (*ldap.SearchResult, error) {
		searches++
		if req.Filter == "(|(member="+a+")(uniqueMember="+a+"))" {
			return &ldap.SearchResult{Entries: []*ldap.Entry{{DN: b}}}, nil
		}
		return &ldap.SearchResult{}, nil
	})
	store := NewMemStore()
	u := &User{DN: "uid=alice,ou=people,dc=example,dc=com", Username: "alice", Groups: []string{a}, hasMemberOf: true}
	require.NoError(t, store.SaveUser(ctx, u))
	cfg := &Config{OrganisationID: "1", SyncedGroups: synced, Store: store, NestedGroups: NestedGroupsWalk}
	require.NoError(t, SyncUserGroups{}.SyncRelations(ctx, cfg, u, dir))

	members, _ := storeMembers(t, store, b)
	assert.Equal(t, []string{"alice"}, members, "b through a")
	for _, g := range synced[1:] {
		_, ok := storeMembers(t, store, g)
		assert.False(t, ok, "%s not created", g)
	}
	assert.Equal(t, 2, searches, "the groups holding a, then those holding b")
}

// A group's primaryGroupToken (its RID) never changes: an Authenticator
// reads it once, not on every login, and concurrent logins share it.
func TestPrimaryGroupTokenReadOnce(t *testing.T) {
	const domainUsers = "cn=Domain Users,cn=Users,dc=ad,dc=test"
	a, err := New(&Config{URLs: []string{"ldap://127.0.0.1:1"}})
	require.NoError(t, err)
	t.Cleanup(func() { a.Close() })
	var searches atomic.Int32
	dir := searchFunc(func(req *ldap.SearchRequest) (*ldap.SearchResult, error) {
		searches.Add(1)
		e := ldap.NewEntry(req.BaseDN, map[string][]string{"primaryGroupToken": {"513"}})
		return &ldap.SearchResult{Entries: []*ldap.Entry{e}}, nil
	})
	g := newGroupRef(domainUsers)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for _, pgid := range []string{"513", "1104"} {
				u := &User{DN: "cn=Alice,cn=Users,dc=ad,dc=test", Username: "alice", hasMemberOf: true,
					Attributes: map[string][]string{"primaryGroupID": {pgid}}}
				member, err := a.newMemberCheck(u, dir).primaryGroup(context.Background(), g)
				assert.NoError(t, err)
				assert.Equal(t, pgid == "513", member, pgid)
			}
		})
	}
	wg.Wait()
	assert.LessOrEqual(t, searches.Load(), int32(8), "at most one read per login racing the first")
	before := searches.Load()
	u := &User{DN: "cn=Bob,cn=Users,dc=ad,dc=test", Username: "bob", hasMemberOf: true, Attributes: map[string][]string{"primaryGroupID": {"513"}}}
	member, err := a.newMemberCheck(u, dir).primaryGroup(context.Background(), g)
	require.NoError(t, err)
	assert.True(t, member)
	assert.Equal(t, before, searches.Load(), "a later login reads no token")
}

// storeMembers returns the usernames in the group dn of the store, sorted, and
// whether the group exists: read through the store's Groups, as storetest
// does (which this package's own tests cannot import).
func storeMembers(t *testing.T, s *MemStore, dn string) ([]string, bool) {
	t.Helper()
	for g, err := range s.Groups(t.Context()) {
		if err != nil {
			t.Fatal(err)
		}
		if DNKey(g.DN) == DNKey(dn) {
			return g.Members, true
		}
	}
	return nil, false
}
