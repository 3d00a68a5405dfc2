package storetest

import (
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth"
)

func batchStore(t *testing.T, s ldapauth.UserStore) ldapauth.BatchStore {
	t.Helper()
	b, ok := s.(ldapauth.BatchStore)
	if !ok {
		t.Skipf("%T does not implement ldapauth.BatchStore: the sync writes into it one call per change", s)
	}
	return b
}

// testBatch applies a batch of every kind of change over a store that holds
// users, a group and memberships, and checks the result is what the calls
// one by one give, in the Batch's order; applied again, it changes nothing.
func testBatch(t *testing.T, s ldapauth.UserStore) {
	bs := batchStore(t, s)
	ctx := t.Context()
	for _, name := range []string{"alice", "bob", "carol"} {
		require.NoError(t, s.SaveUser(ctx, user(name, nil)))
	}
	require.NoError(t, s.SaveGroup(ctx, group(ReadersDN)))
	require.NoError(t, s.SetMember(ctx, ReadersDN, "bob", true))
	require.NoError(t, s.SetMember(ctx, ReadersDN, "carol", true))

	b := &ldapauth.Batch{
		SaveGroups: []ldapauth.Group{group(MarvelDN)},
		SaveUsers:  []*ldapauth.User{user("Alice", map[string]string{"email": "alice@example.com"}), user("dave", nil)},
		Joins:      []ldapauth.OrganisationJoin{{Username: "dave", OrganisationID: "1"}, {Username: "ALICE", OrganisationID: "1"}},
		AddMembers: []ldapauth.Membership{
			{GroupDN: "CN=Marvel,OU=Groups,DC=Example,DC=Com", Username: "dave"},
			{GroupDN: MarvelDN, Username: "alice"},
			{GroupDN: ReadersDN, Username: "DAVE"},
		},
		RemoveMembers: []ldapauth.Membership{{GroupDN: ReadersDN, Username: "Bob"}, {GroupDN: ReadersDN, Username: "nobody"}},
		DeleteUsers:   []string{"CAROL", "nobody"},
	}
	require.Equal(t, 12, b.Len())
	require.NoError(t, bs.ApplyBatch(ctx, b))
	snap := snapshot(t, s)
	assert.Equal(t, []string{"alice", "bob", "dave"}, lower(snap.Users))
	m, ok := members(snap, MarvelDN)
	require.True(t, ok, "the group saved in the batch exists")
	assert.ElementsMatch(t, []string{"alice", "dave"}, lower(m))
	m, _ = members(snap, ReadersDN)
	assert.Equal(t, []string{"dave"}, lower(m), "bob removed, carol deleted with her memberships, dave added")
	assert.Equal(t, "alice@example.com", detail(t, snap, "alice").Fields["email"])
	assert.Equal(t, []string{"1"}, detail(t, snap, "dave").Organisations)
	assert.Equal(t, []string{"1"}, detail(t, snap, "alice").Organisations)
	if r, ok := s.(Reader); ok {
		fields, found, err := r.UserFields(ctx, "alice")
		require.NoError(t, err)
		require.True(t, found)
		assert.Equal(t, "alice@example.com", fields["email"])
	}

	require.NoError(t, bs.ApplyBatch(ctx, b), "a batch applied twice")
	assert.Equal(t, snap, snapshot(t, s), "changes nothing the second time")

	require.NoError(t, bs.ApplyBatch(ctx, &ldapauth.Batch{DeleteGroups: []string{MarvelDN}}))
	_, ok = members(snapshot(t, s), MarvelDN)
	assert.False(t, ok, "a group deleted in a batch is gone")
	require.NoError(t, bs.ApplyBatch(ctx, &ldapauth.Batch{}), "an empty batch")
}

// testBatchRefused holds a batch to atomicity: a refusal after other
// changes of the batch leaves the store as before the batch.
func testBatchRefused(t *testing.T, s ldapauth.UserStore) {
	bs := batchStore(t, s)
	ctx := t.Context()
	require.NoError(t, s.SaveUser(ctx, user("alice", map[string]string{"email": "old@example.com"})))
	require.NoError(t, s.SaveGroup(ctx, group(ReadersDN)))
	require.NoError(t, s.SetMember(ctx, ReadersDN, "alice", true))
	before := snapshot(t, s)

	saves := func() ldapauth.Batch {
		return ldapauth.Batch{
			SaveGroups:    []ldapauth.Group{group("cn=new,ou=groups,dc=example,dc=com")},
			SaveUsers:     []*ldapauth.User{user("alice", map[string]string{"email": "new@example.com"}), user("bob", nil)},
			Joins:         []ldapauth.OrganisationJoin{{Username: "bob", OrganisationID: "1"}},
			RemoveMembers: []ldapauth.Membership{{GroupDN: ReadersDN, Username: "alice"}},
			DeleteUsers:   []string{"alice"},
		}
	}
	for name, spoil := range map[string]func(b *ldapauth.Batch){
		"join of a user neither held nor saved": func(b *ldapauth.Batch) {
			b.Joins = append(b.Joins, ldapauth.OrganisationJoin{Username: "nobody", OrganisationID: "1"})
		},
		"member of a group neither held nor saved": func(b *ldapauth.Batch) {
			b.AddMembers = append(b.AddMembers, ldapauth.Membership{GroupDN: MarvelDN, Username: "bob"})
		},
		"member who is neither held nor saved": func(b *ldapauth.Batch) {
			b.AddMembers = append(b.AddMembers, ldapauth.Membership{GroupDN: ReadersDN, Username: "nobody"})
		},
	} {
		b := saves()
		spoil(&b)
		assert.Error(t, bs.ApplyBatch(ctx, &b), name)
		assert.Equal(t, before, snapshot(t, s), "%s: the refused batch changed nothing", name)
	}
	if r, ok := s.(Reader); ok {
		fields, _, err := r.UserFields(ctx, "alice")
		require.NoError(t, err)
		assert.Equal(t, "old@example.com", fields["email"], "the fields saved before the refusal were rolled back")
	}
	b := saves()
	require.NoError(t, bs.ApplyBatch(ctx, &b), "the same batch, unspoilt")
	assert.Equal(t, []string{"bob"}, lower(snapshot(t, s).Users))
}

// testBatchConcurrent applies batches while other goroutines call the
// UserStore methods, for the race detector and the store's locking.
func testBatchConcurrent(t *testing.T, s ldapauth.UserStore) {
	bs := batchStore(t, s)
	ctx := t.Context()
	require.NoError(t, s.SaveGroup(ctx, group(ReadersDN)))
	const n = 4
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := range n {
		wg.Go(func() {
			var b ldapauth.Batch
			for j := range 20 {
				name := fmt.Sprintf("batch%d-%d", i, j)
				b.SaveUsers = append(b.SaveUsers, user(name, nil))
				b.AddMembers = append(b.AddMembers, ldapauth.Membership{GroupDN: ReadersDN, Username: name})
			}
			errs <- bs.ApplyBatch(ctx, &b)
		})
		wg.Go(func() {
			name := fmt.Sprintf("call%d", i)
			if err := s.SaveUser(ctx, user(name, nil)); err != nil {
				errs <- err
				return
			}
			errs <- s.SetMember(ctx, ReadersDN, name, true)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	m, _ := members(snapshot(t, s), ReadersDN)
	assert.Len(t, m, n*20+n)
}
