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

// loggingPrincipal wraps the principal formatter by embedding it, as a user
// adding a log line would.
type loggingPrincipal struct {
	ldapauth.ActiveDirectoryPrincipalFormatter
	calls *int
}

func (f loggingPrincipal) FormatUsername(cfg *ldapauth.Config, username string) (string, error) {
	*f.calls++
	return f.ActiveDirectoryPrincipalFormatter.FormatUsername(cfg, username)
}

// Validate refuses the principal formatter without a domain, and so a
// wrapper that embeds it, rather than let every login fail; a formatter
// that needs no domain is accepted without one.
func TestValidatePrincipalFormatterDomain(t *testing.T) {
	calls := 0
	for _, tt := range []struct {
		name      string
		formatter ldapauth.UsernameFormatter
		refused   bool
	}{
		{"the principal formatter", ldapauth.ActiveDirectoryPrincipalFormatter{}, true},
		{"a pointer to it", &ldapauth.ActiveDirectoryPrincipalFormatter{}, true},
		{"a wrapper embedding it", loggingPrincipal{calls: &calls}, true},
		{"the down-level formatter", ldapauth.ActiveDirectoryFormatter{}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ldapauth.Config{URLs: []string{"ldap://127.0.0.1"}, FormatUsername: tt.formatter}
			err := cfg.Validate()
			if !tt.refused {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ldapauth.ErrConfig)
			assert.Contains(t, err.Error(), "LDAP_AUTH_ACTIVE_DIRECTORY_DOMAIN")
			cfg.ActiveDirectoryDomain = "corp.example.com"
			require.NoError(t, cfg.Validate(), "with a domain")
		})
	}
	assert.Zero(t, calls, "validation does not call the formatter")
}

func TestUsernameFormatterFunc(t *testing.T) {
	f := ldapauth.UsernameFormatterFunc(func(cfg *ldapauth.Config, u string) (string, error) {
		return "cn=" + ldap.EscapeDN(u) + "," + cfg.SearchBase, nil
	})
	got, err := f.FormatUsername(&ldapauth.Config{SearchBase: "dc=x"}, "a,b")
	require.NoError(t, err)
	assert.Equal(t, `cn=a\,b,dc=x`, got)
}
