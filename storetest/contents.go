package storetest

import (
	"context"
	"slices"
	"strings"

	"github.com/go-ldapauth/ldapauth"
)

// Contents is everything a store holds for ldapauth, read through its
// streaming methods (Users and Groups) into memory: for tests, which
// compare small stores whole. The sync itself never holds this.
type Contents struct {
	// Users are the directory-managed usernames, sorted.
	Users []string
	// Details holds what the store holds of each user, by username as in
	// Users.
	Details map[string]ldapauth.StoredUser
	// Groups are the groups sorted by DN, their members sorted.
	Groups []ldapauth.GroupMembers
}

// Read reads the whole of s.
func Read(ctx context.Context, s ldapauth.UserStore) (*Contents, error) {
	c := &Contents{Details: map[string]ldapauth.StoredUser{}}
	for u, err := range s.Users(ctx) {
		if err != nil {
			return nil, err
		}
		c.Users = append(c.Users, u.Username)
		c.Details[u.Username] = u
	}
	slices.Sort(c.Users)
	for g, err := range s.Groups(ctx) {
		if err != nil {
			return nil, err
		}
		g.Members = slices.Sorted(slices.Values(g.Members))
		c.Groups = append(c.Groups, g)
	}
	slices.SortFunc(c.Groups, func(a, b ldapauth.GroupMembers) int { return strings.Compare(a.DN, b.DN) })
	return c, nil
}

// MustRead is Read for a store that cannot fail (MemStore): it panics on
// an error.
func MustRead(s ldapauth.UserStore) *Contents {
	c, err := Read(context.Background(), s)
	if err != nil {
		panic("storetest: reading the store: " + err.Error())
	}
	return c
}

// User returns the stored user username (compared case-insensitively) as
// a User with its DN and fields, or nil.
func (c *Contents) User(username string) *ldapauth.User {
	for name, d := range c.Details {
		if strings.EqualFold(name, username) {
			return &ldapauth.User{Username: d.Username, DN: d.DN, Fields: d.Fields}
		}
	}
	return nil
}

// Organisations returns the organisations username joined, sorted.
func (c *Contents) Organisations(username string) []string {
	for name, d := range c.Details {
		if strings.EqualFold(name, username) {
			return slices.Sorted(slices.Values(d.Organisations))
		}
	}
	return nil
}

// Members returns the usernames in the group dn (compared as a parsed DN,
// case-insensitively), sorted, and whether the group exists.
func (c *Contents) Members(dn string) ([]string, bool) {
	g, ok := c.group(dn)
	return g.Members, ok
}

// GroupOf returns the stored group dn, and whether it exists.
func (c *Contents) GroupOf(dn string) (ldapauth.Group, bool) {
	g, ok := c.group(dn)
	return g.Group, ok
}

func (c *Contents) group(dn string) (ldapauth.GroupMembers, bool) {
	key := ldapauth.DNKey(dn)
	for _, g := range c.Groups {
		if ldapauth.DNKey(g.DN) == key {
			return g, true
		}
	}
	return ldapauth.GroupMembers{}, false
}

// User returns the user username of s, or nil (MustRead, then
// Contents.User).
func User(s ldapauth.UserStore, username string) *ldapauth.User {
	return MustRead(s).User(username)
}

// Organisations returns the organisations username joined in s, sorted.
func Organisations(s ldapauth.UserStore, username string) []string {
	return MustRead(s).Organisations(username)
}

// Members returns the members of the group dn in s, sorted, and whether
// the group exists.
func Members(s ldapauth.UserStore, dn string) ([]string, bool) {
	return MustRead(s).Members(dn)
}

// GroupOf returns the group dn of s, and whether it exists.
func GroupOf(s ldapauth.UserStore, dn string) (ldapauth.Group, bool) {
	return MustRead(s).GroupOf(dn)
}
