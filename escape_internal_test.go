package ldapauth

import (
	"testing"
	"unicode/utf8"

	"github.com/go-ldap/ldap/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ldapauth keeps its own escaping rather than go-ldap's ldap.EscapeFilter
// and ldap.EscapeDN (which a custom SearchFilterBuilder or UsernameFormatter
// should use): the filter keeps UTF-8 as it is, so the login span and the
// logs show the name typed, and the DN escapes '=', which some servers'
// parsers need.
func TestEscapingDiffersFromGoLDAP(t *testing.T) {
	assert.Equal(t, "jürgen", escapeFilterValue("jürgen"))
	assert.Equal(t, `j\c3\bcrgen`, ldap.EscapeFilter("jürgen"))
	assert.Equal(t, `a\=b`, escapeDNValue("a=b"))
	assert.Equal(t, "a=b", ldap.EscapeDN("a=b"))
}

func TestEscapeFilterValue(t *testing.T) {
	tests := []struct{ in, want string }{
		{"jdoe", "jdoe"},
		{"*", `\2a`},
		{"*)(uid=*", `\2a\29\28uid=\2a`},
		{"admin)(|(uid=*", `admin\29\28|\28uid=\2a`},
		{`a\b`, `a\5cb`},
		{"a\x00b", `a\00b`},
		{"smith, john", "smith, john"},
		{"a=b+c", "a=b+c"},
		{"jürgen", "jürgen"},
		{"日本", "日本"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			assert.Equal(t, tt.want, escapeFilterValue(tt.in))
		})
	}
}

// Whatever is typed, the escaped filter compiles to one equality assertion
// whose value is exactly the typed bytes: no wildcard, no injected clause.
func FuzzEscapeFilterValue(f *testing.F) {
	for _, s := range []string{"jdoe", "*", "*)(uid=*", "admin)(|(uid=*", `\`, "\x00", "jürgen", "日本語", "(", ")"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			return // Authenticate refuses these before any I/O
		}
		packet, err := ldap.CompileFilter("(uid=" + escapeFilterValue(s) + ")")
		require.NoError(t, err)
		require.Equal(t, ldap.FilterEqualityMatch, int(packet.Tag), "an escaped value must never become a substring or presence filter")
		require.Len(t, packet.Children, 2)
		assert.Equal(t, s, packet.Children[1].Data.String())
	})
}

// The escaped value must parse back, as the server parses it, to exactly
// what was typed.
func FuzzEscapeDNValue(f *testing.F) {
	for _, s := range []string{"jdoe", "smith, john", "a+b=c", `\`, "# x ", " ", "jürgen", "a\x00b", "日本語", "\"<>;"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if s == "" || !utf8.ValidString(s) {
			return // Authenticate refuses these before any I/O
		}
		dn, err := ldap.ParseDN("uid=" + escapeDNValue(s) + ",dc=example,dc=com")
		require.NoError(t, err)
		require.Len(t, dn.RDNs, 3)
		require.Len(t, dn.RDNs[0].Attributes, 1)
		assert.Equal(t, s, dn.RDNs[0].Attributes[0].Value)
	})
}
