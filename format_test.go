package ldapauth_test

import (
	"testing"

	"github.com/go-ldap/ldap/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth"
)

func TestFormatters(t *testing.T) {
	openldap := &ldapauth.Config{SearchBase: "ou=people,dc=example,dc=com", UserFields: map[string]string{"username": "uid"}}
	adPlain := &ldapauth.Config{}
	adDomain := &ldapauth.Config{ActiveDirectoryDomain: "DOMAIN"}
	adUPN := &ldapauth.Config{ActiveDirectoryDomain: "domain.com"}
	samName := &ldapauth.Config{SearchBase: "dc=corp,dc=example", UserFields: map[string]string{"username": "sAMAccountName"}}

	tests := []struct {
		name      string
		formatter ldapauth.UsernameFormatter
		cfg       *ldapauth.Config
		in, want  string
	}{
		{"openldap", ldapauth.OpenLDAPFormatter{}, openldap, "jdoe", "uid=jdoe,ou=people,dc=example,dc=com"},
		{"openldap attribute from user fields", ldapauth.OpenLDAPFormatter{}, samName, "jdoe", "sAMAccountName=jdoe,dc=corp,dc=example"},
		{"openldap comma", ldapauth.OpenLDAPFormatter{}, openldap, "smith, john", `uid=smith\, john,ou=people,dc=example,dc=com`},
		{"openldap equals", ldapauth.OpenLDAPFormatter{}, openldap, "a=b", `uid=a\=b,ou=people,dc=example,dc=com`},
		{"openldap plus", ldapauth.OpenLDAPFormatter{}, openldap, "a+b", `uid=a\+b,ou=people,dc=example,dc=com`},
		{"openldap backslash and quote", ldapauth.OpenLDAPFormatter{}, openldap, `a\"b`, `uid=a\\\"b,ou=people,dc=example,dc=com`},
		{"openldap angle and semicolon", ldapauth.OpenLDAPFormatter{}, openldap, "<a;b>", `uid=\<a\;b\>,ou=people,dc=example,dc=com`},
		{"openldap leading hash and space, trailing space", ldapauth.OpenLDAPFormatter{}, openldap, "# x ", `uid=\# x\ ,ou=people,dc=example,dc=com`},
		{"openldap leading space", ldapauth.OpenLDAPFormatter{}, openldap, " x", `uid=\ x,ou=people,dc=example,dc=com`},
		{"openldap NUL", ldapauth.OpenLDAPFormatter{}, openldap, "a\x00b", `uid=a\00b,ou=people,dc=example,dc=com`},
		{"openldap non-ASCII kept", ldapauth.OpenLDAPFormatter{}, openldap, "jürgen", "uid=jürgen,ou=people,dc=example,dc=com"},
		{"openldap filter specials need no DN escaping", ldapauth.OpenLDAPFormatter{}, openldap, "a*(b)", "uid=a*(b),ou=people,dc=example,dc=com"},
		{"active directory plain", ldapauth.ActiveDirectoryFormatter{}, adPlain, "jdoe", "jdoe"},
		{"active directory down-level", ldapauth.ActiveDirectoryFormatter{}, adDomain, "jdoe", `DOMAIN\jdoe`},
		{"active directory principal", ldapauth.ActiveDirectoryPrincipalFormatter{}, adUPN, "jdoe", "jdoe@domain.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.formatter.FormatUsername(tt.cfg, tt.in)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestPrincipalFormatterNeedsDomain(t *testing.T) {
	_, err := ldapauth.ActiveDirectoryPrincipalFormatter{}.FormatUsername(&ldapauth.Config{}, "jdoe")
	require.ErrorIs(t, err, ldapauth.ErrConfig)
}

func TestUsernameFormatterFunc(t *testing.T) {
	f := ldapauth.UsernameFormatterFunc(func(cfg *ldapauth.Config, u string) (string, error) {
		return "cn=" + ldap.EscapeDN(u) + "," + cfg.SearchBase, nil
	})
	got, err := f.FormatUsername(&ldapauth.Config{SearchBase: "dc=x"}, "a,b")
	require.NoError(t, err)
	assert.Equal(t, `cn=a\,b,dc=x`, got)
}
