package storetest

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth"
)

// changeStore returns s as an ldapauth.ChangeStore, or skips the subtest.
func changeStore(t *testing.T, s ldapauth.UserStore) ldapauth.ChangeStore {
	t.Helper()
	cs, ok := s.(ldapauth.ChangeStore)
	if !ok {
		t.Skipf("%T does not implement ldapauth.ChangeStore: SyncChanges reads it whole on every run", s)
	}
	return cs
}

// testLookupUsers: LookupUsers streams the users among the names, compared
// case-insensitively, each once, with what Users would stream of them;
// names the store does not hold are left out.
func testLookupUsers(t *testing.T, s ldapauth.UserStore) {
	cs := changeStore(t, s)
	ctx := t.Context()
	require.NoError(t, s.SaveUser(ctx, user("Alice", map[string]string{"email": "alice@example.com"})))
	require.NoError(t, s.JoinOrganisation(ctx, "alice", "1"))
	require.NoError(t, s.SaveUser(ctx, user("bob", nil)))
	require.NoError(t, s.SaveUser(ctx, user("carol", nil)))
	got := map[string]ldapauth.StoredUser{}
	for u, err := range cs.LookupUsers(ctx, []string{"ALICE", "alice", "bob", "nobody"}) {
		require.NoError(t, err)
		_, dup := got[u.Username]
		assert.False(t, dup, "%s streamed twice", u.Username)
		got[u.Username] = u
	}
	require.Len(t, got, 2, "alice and bob, once each: %v", got)
	a := got["Alice"]
	assert.Equal(t, "uid=Alice,ou=people,dc=example,dc=com", a.DN)
	assert.Equal(t, "alice@example.com", a.Fields["email"])
	assert.Equal(t, []string{"1"}, a.Organisations)
	for _, err := range cs.LookupUsers(ctx, nil) {
		require.NoError(t, err)
		t.Fatal("no names, no user")
	}
}

// testSaveChanges: SaveChanges replaces the state and updates the entries
// (removals, then upserts; with replace, everything else removed first);
// LoadEntries returns those asked for, or all.
func testSaveChanges(t *testing.T, s ldapauth.UserStore) {
	cs := changeStore(t, s)
	ctx := t.Context()
	none, err := cs.LoadEntries(ctx, nil)
	require.NoError(t, err)
	assert.Empty(t, none)

	require.NoError(t, cs.SaveChanges(ctx, []byte("s1"), map[string][]byte{"a": []byte("A"), "b": []byte("B"), "c": {0, 0xff}}, nil, true))
	state, err := cs.LoadSyncState(ctx)
	require.NoError(t, err)
	assert.Equal(t, []byte("s1"), state)
	some, err := cs.LoadEntries(ctx, []string{"a", "c", "missing"})
	require.NoError(t, err)
	assert.Equal(t, map[string][]byte{"a": []byte("A"), "c": {0, 0xff}}, some, "bytes kept, missing ids left out")

	require.NoError(t, cs.SaveChanges(ctx, []byte("s2"), map[string][]byte{"b": []byte("B2"), "d": []byte("D")}, []string{"a", "missing"}, false))
	all, err := cs.LoadEntries(ctx, nil)
	require.NoError(t, err)
	assert.Equal(t, map[string][]byte{"b": []byte("B2"), "c": {0, 0xff}, "d": []byte("D")}, all)
	state, err = cs.LoadSyncState(ctx)
	require.NoError(t, err)
	assert.Equal(t, []byte("s2"), state)

	require.NoError(t, cs.SaveChanges(ctx, []byte("s3"), map[string][]byte{"e": []byte("E")}, nil, true))
	all, err = cs.LoadEntries(ctx, nil)
	require.NoError(t, err)
	assert.Equal(t, map[string][]byte{"e": []byte("E")}, all, "replace drops the rest")
}
