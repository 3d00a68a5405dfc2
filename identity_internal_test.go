package ldapauth

import (
	"testing"

	"github.com/go-ldap/ldap/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The username of a login is the value of the username attribute equal to
// what was typed, in the directory's spelling; an entry whose values do not
// name exactly one such value is refused, never logged in under another.
func TestLoginNameIsTheMatchingValue(t *testing.T) {
	a, err := New(&Config{URLs: []string{"ldap://127.0.0.1"}})
	require.NoError(t, err)
	t.Cleanup(func() { a.Close() })
	entry := func(uids ...string) *ldap.Entry {
		return ldap.NewEntry("uid=x,dc=example,dc=com", map[string][]string{"uid": uids})
	}
	for _, c := range []struct {
		typed string
		uids  []string
		want  string // "" for a refusal
	}{
		{"alice", []string{"Alice"}, "Alice"},
		{"mail@example.com", []string{"alice"}, "alice"}, // one value: a filter may match another attribute
		{"mallory", []string{"admin", "mallory"}, "mallory"},
		{"MALLORY", []string{"admin", "Mallory"}, "Mallory"},
		{"eve", []string{"admin", "mallory"}, ""},
		{"mallory", []string{"Mallory", "mallory"}, ""},
	} {
		got, err := a.loginName(entry(c.uids...), c.typed)
		if c.want == "" {
			require.ErrorIs(t, err, ErrAmbiguousUser, "%q in %v", c.typed, c.uids)
			continue
		}
		require.NoError(t, err)
		assert.Equal(t, c.want, got, "%q in %v", c.typed, c.uids)
	}
	_, err = a.loginName(ldap.NewEntry("uid=x,dc=example,dc=com", nil), "x")
	require.Error(t, err)
}

func TestNameForms(t *testing.T) {
	d, n, ok := downLevelName(`EXAMPLE\carol`)
	assert.True(t, ok)
	assert.Equal(t, []string{"EXAMPLE", "carol"}, []string{d, n})
	for _, s := range []string{`carol`, `\carol`, `EXAMPLE\`, `uid=a\,b,dc=x`, `A\b\c`} {
		_, _, ok := downLevelName(s)
		assert.False(t, ok, s)
	}
	n, dns, ok := principalName("carol@example.com")
	assert.True(t, ok)
	assert.Equal(t, []string{"carol", "example.com"}, []string{n, dns})
	for _, s := range []string{"carol", "@example.com", "carol@", "uid=a@b,dc=x"} {
		_, _, ok := principalName(s)
		assert.False(t, ok, s)
	}
	assert.Equal(t, "ldapauth.test", dnsNameOf("DC=ldapauth,DC=test"))
	assert.Equal(t, "", dnsNameOf("OU=people,DC=ldapauth,DC=test"))
}
