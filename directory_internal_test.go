package ldapauth

import (
	"context"
	"testing"

	"github.com/go-ldap/ldap/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The root DSEs of the servers the suites run (Samba AD, 389-DS 2.3,
// OpenLDAP 2.5), reduced to what directoryTypeOf reads.
func TestDirectoryTypeOf(t *testing.T) {
	entry := func(attrs map[string][]string) *ldap.Entry { return ldap.NewEntry("", attrs) }
	tests := []struct {
		name  string
		entry *ldap.Entry
		want  DirectoryType
	}{
		{"Active Directory", entry(map[string][]string{"supportedCapabilities": {"1.2.840.113556.1.4.800", "1.2.840.113556.1.4.1670"}}), DirectoryActiveDirectory},
		{"389-DS", entry(map[string][]string{"vendorName": {"389 Project"}, "vendorVersion": {"389-Directory/2.3.1 B2025.016.1616"}, "objectClass": {"top"}}), Directory389},
		{"Red Hat Directory Server", entry(map[string][]string{"vendorName": {"Red Hat, Inc."}, "vendorVersion": {"Red Hat-Directory/11.7"}}), Directory389},
		{"OpenLDAP", entry(map[string][]string{"objectClass": {"top", "OpenLDAProotDSE"}}), DirectoryOpenLDAP},
		{"other", entry(map[string][]string{"vendorName": {"Example"}, "objectClass": {"top"}}), directoryOther},
		{"no root DSE", nil, directoryOther},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { assert.Equal(t, tt.want, directoryTypeOf(tt.entry)) })
	}
}

func TestFilterEnabled(t *testing.T) {
	for d, want := range map[DirectoryType]string{
		DirectoryActiveDirectory: filterEnabledAD, Directory389: "(!(nsAccountLock=true))",
		DirectoryOpenLDAP: "(!(pwdAccountLockedTime=000001010000Z))", directoryOther: "", directoryAuto: "",
	} {
		assert.Equal(t, want, filterEnabled(d), d)
		if want != "" {
			_, err := ldap.CompileFilter(want)
			assert.NoError(t, err)
		}
	}
	cfg := &Config{ObjectClass: "inetOrgPerson", ExcludeDisabled: true, DirectoryType: Directory389}
	f, err := DefaultFilters{}.SearchFilters(cfg, map[string]string{"uid": "jdoe"})
	require.NoError(t, err)
	assert.Equal(t, []string{"(uid=jdoe)", "(objectClass=inetOrgPerson)", filterEnabled389}, f)
	cfg.DirectoryType = directoryOther
	_, err = DefaultFilters{}.SearchFilters(cfg, nil)
	assert.ErrorIs(t, err, ErrConfig, "no filter to add on an unknown directory")
}

// On 389-DS memberOf already lists the groups above the user (the memberOf
// plugin), so walk sends no search for a group the user is not in: a
// login with walk costs what one without it does.
func TestWalkTransitiveMemberOf(t *testing.T) {
	searches := 0
	dir := DirectoryFunc(func(ctx context.Context, req *ldap.SearchRequest) (*ldap.SearchResult, error) {
		searches++
		return &ldap.SearchResult{}, nil
	})
	cfg := &Config{NestedGroups: NestedGroupsWalk}
	u := &User{DN: "uid=carol,ou=people,dc=example,dc=com", Username: "carol",
		Groups: []string{"cn=nested-child,ou=groups,dc=example,dc=com", "cn=nested-parent,ou=groups,dc=example,dc=com"}, hasMemberOf: true}
	for _, transitive := range []bool{true, false} {
		searches = 0
		m := newMemberCheck(cfg, u, dir)
		m.transitive = transitive
		member, _, err := m.member(context.Background(), newGroupRef("cn=elsewhere,ou=groups,dc=example,dc=com"))
		require.NoError(t, err)
		assert.False(t, member)
		member, _, err = m.member(context.Background(), newGroupRef("cn=nested-parent,ou=groups,dc=example,dc=com"))
		require.NoError(t, err)
		assert.True(t, member)
		if transitive {
			assert.Zero(t, searches, "memberOf is complete: nothing to walk")
		} else {
			assert.Positive(t, searches, "elsewhere the walk searches")
		}
	}
}
