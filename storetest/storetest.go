// Package storetest checks that an ldapauth.UserStore keeps the contract
// written on the interface: case-insensitive usernames, group DNs compared
// as parsed DNs, idempotent methods, safety for concurrent use, and a failed
// call that changes nothing. Run it from a test of your own store:
//
//	func TestStoreContract(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) ldapauth.UserStore {
//			return newEmptyStore(t)
//		})
//	}
//
// The suite observes a store through its streaming reads, Users and Groups
// (see [Read]); a store that also implements [Reader] has the mapped fields
// and the organisation join read through it as well. A store that
// implements [ldapauth.BatchStore] or [ldapauth.ChangeStore] is held to its
// contract too (those subtests skip, saying why, for one that does not).
package storetest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth"
)

// Reader is implemented by stores whose users the suite can also read one
// by one, beside Users.
type Reader interface {
	// UserFields returns the mapped fields saved for username (compared
	// case-insensitively), and false when the store has no such user.
	UserFields(ctx context.Context, username string) (map[string]string, bool, error)
	// Organisations returns the organisation IDs username joined, in any
	// order.
	Organisations(ctx context.Context, username string) ([]string, error)
}

// DNs of the groups the suite uses.
const (
	ReadersDN = "cn=readers,ou=groups,dc=example,dc=com"
	MarvelDN  = "cn=marvel,ou=groups,dc=example,dc=com"
)

// Run runs the contract suite, each subtest on a new, empty store made by
// newStore (which registers its own cleanup with t).
func Run(t *testing.T, newStore func(t *testing.T) ldapauth.UserStore) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s ldapauth.UserStore)
	}{
		{"Empty", testEmpty},
		{"SaveUser", testSaveUser},
		{"UsernameCaseInsensitive", testUsernameCase},
		{"SaveUserOverwritesFields", testOverwriteFields},
		{"SaveUserCopiesFields", testCopiesFields},
		{"DeleteUser", testDeleteUser},
		{"JoinOrganisation", testJoinOrganisation},
		{"SaveGroup", testSaveGroup},
		{"GroupDNParsedCaseInsensitive", testGroupDN},
		{"DeleteGroup", testDeleteGroup},
		{"SetMember", testSetMember},
		{"SetMemberMissingGroup", testSetMemberMissingGroup},
		{"UnsavedUser", testUnsavedUser},
		{"StoredUsers", testStoredUsers},
		{"StreamsEachOnce", testStreamsEachOnce},
		{"ChangeStoreLookupUsers", testLookupUsers},
		{"ChangeStoreSaveChanges", testSaveChanges},
		{"Concurrent", testConcurrent},
		{"Batch", testBatch},
		{"BatchRefusedChangesNothing", testBatchRefused},
		{"BatchConcurrent", testBatchConcurrent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, newStore(t))
		})
	}
}

func user(name string, fields map[string]string) *ldapauth.User {
	f := map[string]string{"username": name}
	for k, v := range fields {
		f[k] = v
	}
	return &ldapauth.User{DN: "uid=" + name + ",ou=people,dc=example,dc=com", Username: name, Fields: f}
}

func group(dn string) ldapauth.Group { return ldapauth.Group{DN: dn, Name: ldapauth.GroupName(dn)} }

func snapshot(t *testing.T, s ldapauth.UserStore) *Contents {
	t.Helper()
	snap, err := Read(t.Context(), s)
	require.NoError(t, err)
	require.NotNil(t, snap)
	return snap
}

// members returns the members of the group dn in snap (compared
// case-insensitively), and whether the group is there.
func members(snap *Contents, dn string) ([]string, bool) {
	for _, g := range snap.Groups {
		if strings.EqualFold(g.DN, dn) {
			return g.Members, true
		}
	}
	return nil, false
}

// lower returns names in lower case: which spelling a store keeps of a
// name given in two is not part of the contract.
func lower(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = strings.ToLower(n)
	}
	return out
}

func reader(t *testing.T, s ldapauth.UserStore) Reader {
	t.Helper()
	if r, ok := s.(Reader); ok {
		return r
	}
	return streamReader{s}
}

// streamReader reads a store's fields and organisations through Users.
type streamReader struct{ s ldapauth.UserStore }

func (r streamReader) UserFields(ctx context.Context, username string) (map[string]string, bool, error) {
	c, err := Read(ctx, r.s)
	if err != nil {
		return nil, false, err
	}
	u := c.User(username)
	if u == nil {
		return nil, false, nil
	}
	return u.Fields, true, nil
}

func (r streamReader) Organisations(ctx context.Context, username string) ([]string, error) {
	c, err := Read(ctx, r.s)
	if err != nil {
		return nil, err
	}
	return c.Organisations(username), nil
}

// testStreamsEachOnce checks that Users and Groups stream every user and
// group once, and that a reader stopping early (as a range loop's break)
// is fine: the store is usable at once afterwards.
func testStreamsEachOnce(t *testing.T, s ldapauth.UserStore) {
	ctx := t.Context()
	const n = 300
	require.NoError(t, s.SaveGroup(ctx, group(ReadersDN)))
	require.NoError(t, s.SaveGroup(ctx, group(MarvelDN)))
	for i := range n {
		name := fmt.Sprintf("user%03d", i)
		require.NoError(t, s.SaveUser(ctx, user(name, map[string]string{"email": name + "@example.com"})))
		require.NoError(t, s.JoinOrganisation(ctx, name, "1"))
		require.NoError(t, s.SetMember(ctx, ReadersDN, name, true))
	}
	seen := map[string]int{}
	for u, err := range s.Users(ctx) {
		require.NoError(t, err)
		seen[strings.ToLower(u.Username)]++
		assert.Equal(t, u.Username+"@example.com", u.Fields["email"], "each user with its own fields")
		assert.Equal(t, []string{"1"}, u.Organisations)
	}
	assert.Len(t, seen, n)
	for name, times := range seen {
		assert.Equal(t, 1, times, "%s streamed once", name)
	}
	got := 0
	for _, err := range s.Users(ctx) {
		require.NoError(t, err)
		if got++; got == 3 {
			break
		}
	}
	for _, err := range s.Groups(ctx) {
		require.NoError(t, err)
		break
	}
	require.NoError(t, s.SaveUser(ctx, user("late", nil)), "the store works after a stream stopped early")
	groups := map[string]int{}
	for g, err := range s.Groups(ctx) {
		require.NoError(t, err)
		groups[ldapauth.DNKey(g.DN)] = len(g.Members)
	}
	assert.Equal(t, map[string]int{ldapauth.DNKey(ReadersDN): n, ldapauth.DNKey(MarvelDN): 0}, groups)
}

func testEmpty(t *testing.T, s ldapauth.UserStore) {
	snap := snapshot(t, s)
	assert.Empty(t, snap.Users)
	assert.Empty(t, snap.Groups)
}

func testSaveUser(t *testing.T, s ldapauth.UserStore) {
	ctx := t.Context()
	require.NoError(t, s.SaveUser(ctx, user("alice", map[string]string{"email": "alice@example.com"})))
	require.NoError(t, s.SaveUser(ctx, user("jürgen", nil)))
	require.NoError(t, s.SaveUser(ctx, user("alice", nil)), "saving an existing user updates it")
	assert.ElementsMatch(t, []string{"alice", "jürgen"}, snapshot(t, s).Users)
}

func testUsernameCase(t *testing.T, s ldapauth.UserStore) {
	ctx := t.Context()
	require.NoError(t, s.SaveUser(ctx, user("Alice", nil)))
	require.NoError(t, s.SaveUser(ctx, user("ALICE", nil)))
	require.NoError(t, s.SaveUser(ctx, user("Jürgen", nil)))
	require.NoError(t, s.SaveUser(ctx, user("JÜRGEN", nil)))
	users := snapshot(t, s).Users
	require.Len(t, users, 2, "one user per name whatever the case: %q", users)

	require.NoError(t, s.DeleteUser(ctx, "alice"))
	require.NoError(t, s.DeleteUser(ctx, "jürgen"))
	assert.Empty(t, snapshot(t, s).Users, "deleting by another case removes the user")
}

func testOverwriteFields(t *testing.T, s ldapauth.UserStore) {
	ctx := t.Context()
	require.NoError(t, s.SaveUser(ctx, user("alice", map[string]string{"email": "old@example.com", "first_name": "Alice"})))
	require.NoError(t, s.SaveUser(ctx, user("alice", map[string]string{"email": "new@example.com", "last_name": "Liddell"})))
	r := reader(t, s)
	fields, ok, err := r.UserFields(ctx, "ALICE")
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, map[string]string{"username": "alice", "email": "new@example.com", "last_name": "Liddell"}, fields,
		"the mapped fields are the last login's, a field gone from the directory included")

	_, ok, err = r.UserFields(ctx, "nobody")
	require.NoError(t, err)
	assert.False(t, ok)
}

func testCopiesFields(t *testing.T, s ldapauth.UserStore) {
	ctx := t.Context()
	u := user("alice", map[string]string{"email": "alice@example.com"})
	require.NoError(t, s.SaveUser(ctx, u))
	u.Fields["email"] = "changed@example.com"
	fields, ok, err := reader(t, s).UserFields(ctx, "alice")
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, "alice@example.com", fields["email"], "the store must not keep the caller's map")
}

func testDeleteUser(t *testing.T, s ldapauth.UserStore) {
	ctx := t.Context()
	require.NoError(t, s.SaveUser(ctx, user("alice", nil)))
	require.NoError(t, s.SaveUser(ctx, user("bob", nil)))
	require.NoError(t, s.SaveGroup(ctx, group(ReadersDN)))
	require.NoError(t, s.SetMember(ctx, ReadersDN, "alice", true))
	require.NoError(t, s.SetMember(ctx, ReadersDN, "bob", true))
	require.NoError(t, s.JoinOrganisation(ctx, "alice", "1"))

	require.NoError(t, s.DeleteUser(ctx, "alice"))
	snap := snapshot(t, s)
	assert.Equal(t, []string{"bob"}, snap.Users)
	m, ok := members(snap, ReadersDN)
	require.True(t, ok, "the group stays")
	assert.Equal(t, []string{"bob"}, m, "the user's memberships go with it")
	if r, ok := s.(Reader); ok {
		orgs, err := r.Organisations(ctx, "alice")
		require.NoError(t, err)
		assert.Empty(t, orgs, "the organisation join goes with the user")
	}

	require.NoError(t, s.DeleteUser(ctx, "alice"), "deleting a missing user succeeds")
	require.NoError(t, s.DeleteUser(ctx, "never-saved"))
	assert.Equal(t, []string{"bob"}, snapshot(t, s).Users)
}

func testJoinOrganisation(t *testing.T, s ldapauth.UserStore) {
	ctx := t.Context()
	require.NoError(t, s.SaveUser(ctx, user("alice", nil)))
	require.NoError(t, s.JoinOrganisation(ctx, "alice", "1"))
	require.NoError(t, s.JoinOrganisation(ctx, "alice", "1"), "a returning user joins again harmlessly")
	require.NoError(t, s.JoinOrganisation(ctx, "Alice", "1"))
	require.NoError(t, s.JoinOrganisation(ctx, "alice", "2"))
	orgs, err := reader(t, s).Organisations(ctx, "alice")
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"1", "2"}, orgs)
}

func testSaveGroup(t *testing.T, s ldapauth.UserStore) {
	ctx := t.Context()
	require.NoError(t, s.SaveGroup(ctx, group(ReadersDN)))
	require.NoError(t, s.SaveGroup(ctx, group(ReadersDN)), "saving an existing group succeeds")
	require.NoError(t, s.SaveGroup(ctx, ldapauth.Group{DN: MarvelDN, Name: "old name"}))
	require.NoError(t, s.SaveGroup(ctx, group(MarvelDN)), "and updates its name")
	snap := snapshot(t, s)
	require.Len(t, snap.Groups, 2)
	names := map[string]string{}
	for _, g := range snap.Groups {
		names[strings.ToLower(g.DN)] = g.Name
		assert.Empty(t, g.Members)
	}
	assert.Equal(t, map[string]string{ReadersDN: "readers", MarvelDN: "marvel"}, names)
}

func testGroupDN(t *testing.T, s ldapauth.UserStore) {
	ctx := t.Context()
	require.NoError(t, s.SaveUser(ctx, user("alice", nil)))
	require.NoError(t, s.SaveGroup(ctx, ldapauth.Group{DN: "CN=Readers,OU=Groups,DC=example,DC=com", Name: "Readers"}))
	require.NoError(t, s.SaveGroup(ctx, ldapauth.Group{DN: "cn=readers, ou=groups, dc=example, dc=com", Name: "readers"}))
	require.NoError(t, s.SetMember(ctx, "cn=READERS,ou=groups,dc=EXAMPLE,dc=com", "alice", true))
	snap := snapshot(t, s)
	require.Len(t, snap.Groups, 1, "DNs equal when parsed are one group: %+v", snap.Groups)
	assert.Equal(t, []string{"alice"}, snap.Groups[0].Members)

	require.NoError(t, s.DeleteGroup(ctx, "cn=readers , ou=groups,dc=example,dc=com"))
	assert.Empty(t, snapshot(t, s).Groups)
}

func testDeleteGroup(t *testing.T, s ldapauth.UserStore) {
	ctx := t.Context()
	require.NoError(t, s.SaveUser(ctx, user("alice", nil)))
	require.NoError(t, s.SaveGroup(ctx, group(ReadersDN)))
	require.NoError(t, s.SaveGroup(ctx, group(MarvelDN)))
	require.NoError(t, s.SetMember(ctx, ReadersDN, "alice", true))
	require.NoError(t, s.SetMember(ctx, MarvelDN, "alice", true))

	require.NoError(t, s.DeleteGroup(ctx, ReadersDN))
	snap := snapshot(t, s)
	require.Len(t, snap.Groups, 1)
	assert.Equal(t, "marvel", snap.Groups[0].Name)
	assert.Equal(t, []string{"alice"}, snap.Groups[0].Members)
	assert.Equal(t, []string{"alice"}, snap.Users, "deleting a group keeps its members")

	require.NoError(t, s.DeleteGroup(ctx, ReadersDN), "deleting a missing group succeeds")
	require.NoError(t, s.SaveGroup(ctx, group(ReadersDN)))
	m, ok := members(snapshot(t, s), ReadersDN)
	require.True(t, ok)
	assert.Empty(t, m, "a group saved again starts without the old members")
}

func testSetMember(t *testing.T, s ldapauth.UserStore) {
	ctx := t.Context()
	for _, name := range []string{"alice", "bob"} {
		require.NoError(t, s.SaveUser(ctx, user(name, nil)))
	}
	require.NoError(t, s.SaveGroup(ctx, group(ReadersDN)))
	require.NoError(t, s.SetMember(ctx, ReadersDN, "alice", true))
	require.NoError(t, s.SetMember(ctx, ReadersDN, "alice", true), "adding an existing membership succeeds")
	require.NoError(t, s.SetMember(ctx, ReadersDN, "ALICE", true))
	require.NoError(t, s.SetMember(ctx, ReadersDN, "bob", true))
	m, _ := members(snapshot(t, s), ReadersDN)
	assert.ElementsMatch(t, []string{"alice", "bob"}, lower(m), "one membership per user whatever the case")

	require.NoError(t, s.SetMember(ctx, ReadersDN, "Bob", false))
	require.NoError(t, s.SetMember(ctx, ReadersDN, "bob", false), "removing a missing membership succeeds")
	m, _ = members(snapshot(t, s), ReadersDN)
	require.Len(t, m, 1)
	assert.True(t, strings.EqualFold("alice", m[0]))

	require.NoError(t, s.SetMember(ctx, MarvelDN, "alice", false), "removing from a missing group succeeds")
	_, ok := members(snapshot(t, s), MarvelDN)
	assert.False(t, ok, "and does not create the group")
}

func testSetMemberMissingGroup(t *testing.T, s ldapauth.UserStore) {
	ctx := t.Context()
	require.NoError(t, s.SaveUser(ctx, user("alice", nil)))
	before := snapshot(t, s)
	assert.Error(t, s.SetMember(ctx, MarvelDN, "alice", true), "adding to a group that does not exist is an error")
	assert.Equal(t, before, snapshot(t, s), "the failed call changed nothing")
}

// testUnsavedUser holds a store to the part of the contract about users it
// does not hold: it may refuse to join or add them (the Authenticator always
// saves a user first) but must then change nothing, and either way such a
// user does not become directory-managed. Removing their membership
// succeeds.
func testUnsavedUser(t *testing.T, s ldapauth.UserStore) {
	ctx := t.Context()
	require.NoError(t, s.SaveUser(ctx, user("alice", nil)))
	require.NoError(t, s.SaveGroup(ctx, group(ReadersDN)))
	before := snapshot(t, s)

	if err := s.JoinOrganisation(ctx, "nobody", "1"); err != nil {
		assert.Equal(t, before, snapshot(t, s), "a refused join changed nothing")
	}
	if err := s.SetMember(ctx, ReadersDN, "nobody", true); err != nil {
		assert.Equal(t, before, snapshot(t, s), "a refused membership changed nothing")
	}
	assert.Equal(t, []string{"alice"}, snapshot(t, s).Users, "joining or adding does not save a user")
	require.NoError(t, s.SetMember(ctx, ReadersDN, "nobody", false), "removing a membership of a user never saved succeeds")

	require.NoError(t, s.SaveUser(ctx, user("Nobody", nil)))
	require.NoError(t, s.JoinOrganisation(ctx, "NOBODY", "1"), "once saved, the user joins, by any case")
	require.NoError(t, s.SetMember(ctx, ReadersDN, "nobody", true), "and is added")
	m, _ := members(snapshot(t, s), ReadersDN)
	assert.Equal(t, []string{"nobody"}, lower(m))
}

// testStoredUsers checks what Users streams against what was saved: the
// sync compares them with the directory to write only real changes, so a
// wrong detail is a change written on every run, or one never written.
func testStoredUsers(t *testing.T, s ldapauth.UserStore) {
	ctx := t.Context()
	alice := user("Alice", map[string]string{"email": "alice@example.com", "first_name": "Alice"})
	require.NoError(t, s.SaveUser(ctx, alice))
	require.NoError(t, s.JoinOrganisation(ctx, "alice", "1"))
	require.NoError(t, s.JoinOrganisation(ctx, "alice", "2"))
	bob := &ldapauth.User{DN: "uid=bob,ou=people,dc=example,dc=com", Username: "bob"} // no fields, no organisation
	require.NoError(t, s.SaveUser(ctx, bob))
	require.NoError(t, s.SaveUser(ctx, user("carol", nil)))
	require.NoError(t, s.DeleteUser(ctx, "carol"))

	snap := snapshot(t, s)
	require.Len(t, snap.Details, len(snap.Users), "one detail per user, no more: %v", snap.Details)
	for _, name := range snap.Users {
		_, ok := snap.Details[name]
		assert.True(t, ok, "Details is keyed by the username as in Users: no entry for %q", name)
	}
	a, b := detail(t, snap, "alice"), detail(t, snap, "bob")
	assert.Equal(t, alice.DN, a.DN)
	assert.Equal(t, alice.Fields, a.Fields)
	assert.ElementsMatch(t, []string{"1", "2"}, a.Organisations)
	assert.Equal(t, bob.DN, b.DN)
	assert.Empty(t, b.Fields)
	assert.Empty(t, b.Organisations)

	moved := user("alice", map[string]string{"email": "new@example.com"})
	moved.DN = "uid=alice,ou=moved,dc=example,dc=com"
	require.NoError(t, s.SaveUser(ctx, moved))
	a = detail(t, snapshot(t, s), "alice")
	assert.Equal(t, moved.DN, a.DN, "the DN is the last saved")
	assert.Equal(t, moved.Fields, a.Fields, "the fields are the last saved, a field gone included")
	assert.ElementsMatch(t, []string{"1", "2"}, a.Organisations, "saving a user keeps its organisations")
}

// detail returns the details of the user name (compared
// case-insensitively) in snap.
func detail(t *testing.T, snap *Contents, name string) ldapauth.StoredUser {
	t.Helper()
	for k, d := range snap.Details {
		if strings.EqualFold(k, name) {
			return d
		}
	}
	t.Fatalf("no details for %s in %v", name, snap.Details)
	return ldapauth.StoredUser{}
}

// testConcurrent runs the calls of many logins at once, as one Authenticator
// serving many users does, and of the same user twice at once.
func testConcurrent(t *testing.T, s ldapauth.UserStore) {
	ctx := t.Context()
	require.NoError(t, s.SaveGroup(ctx, group(ReadersDN)))
	const users, rounds = 8, 3
	var wg sync.WaitGroup
	errs := make(chan error, 2*users*rounds)
	login := func(name string, i int) {
		defer wg.Done()
		err := func() error {
			if err := s.SaveUser(ctx, user(name, map[string]string{"email": fmt.Sprintf("%s-%d@example.com", name, i)})); err != nil {
				return err
			}
			if err := s.JoinOrganisation(ctx, name, "1"); err != nil {
				return err
			}
			if err := s.SaveGroup(ctx, group(ReadersDN)); err != nil {
				return err
			}
			if err := s.SetMember(ctx, ReadersDN, name, true); err != nil {
				return err
			}
			_, err := Read(ctx, s)
			return err
		}()
		if err != nil {
			errs <- fmt.Errorf("%s round %d: %w", name, i, err)
		}
	}
	for i := range rounds {
		for u := range users {
			wg.Add(2) // the same user twice at once
			go login(fmt.Sprintf("user%d", u), i)
			go login(fmt.Sprintf("user%d", u), i)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		assert.NoError(t, err)
	}

	snap := snapshot(t, s)
	assert.Len(t, snap.Users, users)
	m, ok := members(snap, ReadersDN)
	require.True(t, ok)
	assert.Len(t, m, users)
	if r, ok := s.(Reader); ok {
		orgs, err := r.Organisations(ctx, "user0")
		require.NoError(t, err)
		assert.Equal(t, []string{"1"}, orgs)
	}
}
