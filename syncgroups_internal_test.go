package ldapauth

import (
	"testing"

	"github.com/stretchr/testify/assert"
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
				g.index()
			}
			member, known := memberByRule(tt.hasMemberOf, tt.inMemberOf, g, tt.dn, tt.username)
			assert.Equal(t, tt.member, member, "%s (indexed %v)", tt.name, indexed)
			assert.Equal(t, tt.known, known, "%s (indexed %v)", tt.name, indexed)
		}
	}
}
