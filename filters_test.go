package ldapauth_test

import (
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth"
)

func TestDefaultFilters(t *testing.T) {
	cfg := &ldapauth.Config{ObjectClass: "inetOrgPerson"}
	got, err := ldapauth.DefaultFilters{}.SearchFilters(cfg, map[string]string{"uid": "*)(uid=*"})
	require.NoError(t, err)
	assert.Equal(t, []string{`(uid=\2a\29\28uid=\2a)`, "(objectClass=inetOrgPerson)"}, got)
}

func TestLoginGroupFilters(t *testing.T) {
	cfg := &ldapauth.Config{ObjectClass: "user", LoginGroup: `CN=Readers (EU),CN=Roles,dc=admin,dc=com`}
	got, err := ldapauth.LoginGroupFilters{}.SearchFilters(cfg, map[string]string{"sAMAccountName": "jdoe"})
	require.NoError(t, err)
	assert.Equal(t, []string{"(sAMAccountName=jdoe)", "(objectClass=user)", `(memberOf=CN=Readers \28EU\29,CN=Roles,dc=admin,dc=com)`}, got)

	cfg.LoginGroup = ""
	got, err = ldapauth.LoginGroupFilters{}.SearchFilters(cfg, map[string]string{"uid": "jdoe"})
	require.NoError(t, err)
	assert.Equal(t, []string{"(uid=jdoe)", "(objectClass=user)"}, got, "without a login group it adds nothing, as Flagsmith's function")
}

func TestFiltersNestedAndDisabled(t *testing.T) {
	const group = `CN=Readers (EU),CN=Users,DC=corp,DC=test`
	tests := []struct {
		name    string
		nested  ldapauth.NestedGroups
		exclude bool
		builder ldapauth.SearchFilterBuilder
		want    []string
	}{
		{"login group, in chain", ldapauth.NestedGroupsActiveDirectory, false, ldapauth.LoginGroupFilters{},
			[]string{"(sAMAccountName=jdoe)", "(objectClass=user)", `(memberOf:1.2.840.113556.1.4.1941:=CN=Readers \28EU\29,CN=Users,DC=corp,DC=test)`}},
		{"login group, walk keeps the plain filter", ldapauth.NestedGroupsWalk, false, ldapauth.LoginGroupFilters{},
			[]string{"(sAMAccountName=jdoe)", "(objectClass=user)", `(memberOf=CN=Readers \28EU\29,CN=Users,DC=corp,DC=test)`}},
		{"login group, disabled excluded", ldapauth.NestedGroupsActiveDirectory, true, ldapauth.LoginGroupFilters{},
			[]string{"(sAMAccountName=jdoe)", "(objectClass=user)", "(!(userAccountControl:1.2.840.113556.1.4.803:=2))", `(memberOf:1.2.840.113556.1.4.1941:=CN=Readers \28EU\29,CN=Users,DC=corp,DC=test)`}},
		{"default, disabled excluded", ldapauth.NestedGroups(""), true, ldapauth.DefaultFilters{},
			[]string{"(sAMAccountName=jdoe)", "(objectClass=user)", "(!(userAccountControl:1.2.840.113556.1.4.803:=2))"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &ldapauth.Config{ObjectClass: "user", LoginGroup: group, NestedGroups: tt.nested, ExcludeDisabled: tt.exclude}
			got, err := tt.builder.SearchFilters(cfg, map[string]string{"sAMAccountName": "jdoe"})
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
			_, err = ldap.CompileFilter("(&" + strings.Join(got, "") + ")")
			assert.NoError(t, err, "the filter compiles")
		})
	}
}

func TestSearchFilterBuilderFunc(t *testing.T) {
	b := ldapauth.SearchFilterBuilderFunc(func(cfg *ldapauth.Config, lookup map[string]string) ([]string, error) {
		return []string{"(mail=" + ldap.EscapeFilter(lookup["uid"]) + ")"}, nil
	})
	got, err := b.SearchFilters(&ldapauth.Config{}, map[string]string{"uid": "a*"})
	require.NoError(t, err)
	assert.Equal(t, []string{`(mail=a\2a)`}, got)
}

// On Active Directory the built-in filters leave computer accounts out
// (computer is a subclass of user); on other directories, where
// objectClass=computer may be unknown and the NOT would then exclude
// everyone, they add nothing.
func TestFiltersComputerAccounts(t *testing.T) {
	for _, tt := range []struct {
		dir  ldapauth.DirectoryType
		want []string
	}{
		{ldapauth.DirectoryActiveDirectory, []string{"(sAMAccountName=jdoe)", "(objectClass=user)", "(!(objectClass=computer))", "(memberOf=CN=G,DC=corp,DC=test)"}},
		{ldapauth.DirectoryOpenLDAP, []string{"(sAMAccountName=jdoe)", "(objectClass=user)", "(memberOf=CN=G,DC=corp,DC=test)"}},
		{ldapauth.Directory389, []string{"(sAMAccountName=jdoe)", "(objectClass=user)", "(memberOf=CN=G,DC=corp,DC=test)"}},
		{ldapauth.DirectoryType(""), []string{"(sAMAccountName=jdoe)", "(objectClass=user)", "(memberOf=CN=G,DC=corp,DC=test)"}},
	} {
		t.Run(string(tt.dir), func(t *testing.T) {
			cfg := &ldapauth.Config{ObjectClass: "user", LoginGroup: "CN=G,DC=corp,DC=test", DirectoryType: tt.dir}
			got, err := ldapauth.LoginGroupFilters{}.SearchFilters(cfg, map[string]string{"sAMAccountName": "jdoe"})
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}
